"""toyworld: deterministic world, corpus and tasks in the real datasets' schemas."""

import json

import pytest

from encoderlab.data import World, export_tasks, measure_baselines
from encoderlab.data.toyworld import NER_LABELS, SPLIT_SIZES


def test_world_corpus_and_tasks_are_deterministic():
    a, b, c = World(seed=0), World(seed=0), World(seed=1)
    assert [a.document(i) for i in range(20)] == [b.document(i) for i in range(20)]
    assert [a.document(i) for i in range(20)] != [c.document(i) for i in range(20)]
    assert a.tasks() == b.tasks()
    assert a.tasks()["toy-nli"]["splits"]["test"] != c.tasks()["toy-nli"]["splits"]["test"]


def test_corpus_is_large_and_fast():
    import time

    start = time.perf_counter()
    words = sum(len(doc.split()) for doc in World(seed=0).corpus(20_000))
    assert words > 300_000 and time.perf_counter() - start < 30  # a generous bound: seconds in practice


def test_tasks_follow_the_hub_schemas():
    tasks = World(seed=0).tasks()
    for name in ("toy-sentiment", "toy-nli", "toy-ner", "toy-qa"):
        assert {split: len(rows) for split, rows in tasks[name]["splits"].items()} == SPLIT_SIZES
    sst2 = tasks["toy-sentiment"]["splits"]["train"][0]
    # the hub schema, plus ``held_out``: whether an item's key words never occur in fine-tuning data
    assert set(sst2) == {"sentence", "label", "idx", "held_out"} and sst2["label"] in (0, 1)
    mnli = tasks["toy-nli"]["splits"]["train"]
    assert set(mnli[0]) == {"premise", "hypothesis", "label", "idx", "held_out"}
    assert {row["label"] for row in mnli} == {0, 1, 2}
    for row in tasks["toy-ner"]["splits"]["train"]:
        assert set(row) == {"id", "tokens", "ner_tags", "held_out"} and len(row["tokens"]) == len(row["ner_tags"])
        assert all(0 <= tag < len(NER_LABELS) for tag in row["ner_tags"])
        for i, tag in enumerate(row["ner_tags"]):  # IOB2: an I- tag continues an entity of its type
            if NER_LABELS[tag].startswith("I-"):
                assert NER_LABELS[row["ner_tags"][i - 1]][2:] == NER_LABELS[tag][2:]
    kinds = {NER_LABELS[t][2:] for row in tasks["toy-ner"]["splits"]["train"] for t in row["ner_tags"] if t}
    assert kinds == {"PER", "ORG", "LOC", "MISC"}
    qa = tasks["toy-qa"]["splits"]["train"]
    assert set(qa[0]) == {"id", "title", "context", "question", "answers", "held_out"}
    answerable = [r for r in qa if r["answers"]["text"]]
    assert 0.4 < len(answerable) / len(qa) < 0.9
    for row in answerable:
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert row["context"][start : start + len(text)] == text
        assert row["context"].index(row["title"]) < start  # the answer follows the question's cue
    retrieval = tasks["toy-retrieval"]
    corpus_ids = {doc["_id"] for doc in retrieval["corpus"]}
    assert set(retrieval["corpus"][0]) == {"_id", "title", "text"}
    for split in ("train", "validation", "test"):
        assert retrieval["queries"][split] and all(set(q) == {"_id", "text", "held_out"}
                                                   for q in retrieval["queries"][split])
        assert all(r["corpus-id"] in corpus_ids and r["score"] == 1 for r in retrieval["qrels"][split])
    for name in ("toy-sentiment", "toy-nli", "toy-ner", "toy-qa"):  # never in training, about half elsewhere
        splits = tasks[name]["splits"]
        assert not any(r["held_out"] for r in splits["train"])
        assert 0.4 < sum(r["held_out"] for r in splits["test"]) / len(splits["test"]) < 0.6
    assert not any(q["held_out"] for q in retrieval["queries"]["train"])
    assert 0.3 < sum(q["held_out"] for q in retrieval["queries"]["test"]) / len(retrieval["queries"]["test"]) < 0.7
    # Every query has one relevant review; held-out groups (and their reviews) never meet training.
    relevant = {split: [r["corpus-id"] for r in retrieval["qrels"][split]] for split in ("train", "validation", "test")}
    for split in ("validation", "test"):
        assert len(relevant[split]) == len(set(relevant[split])) == len(retrieval["queries"][split])
        assert not set(relevant[split]) & set(relevant["train"])
    train_texts = {q["text"] for q in retrieval["queries"]["train"]}
    assert not train_texts & {q["text"] for q in retrieval["queries"]["test"]}
    assert len(retrieval["queries"]["train"]) >= 32 * 20  # enough for the one-epoch protocol to take 20+ steps


def test_retrieval_relevance_is_decided_by_meaning_not_by_shared_words():
    """A query names a (thing, aspect, city) group and a judgement; the group's two reviews share
    every word of the query except the judgement, which neither uses: the adjective's meaning
    (or its negation) decides, and in validation/test half the adjectives are held out."""
    from encoderlab.data.toyworld import RETRIEVAL_JUDGEMENTS, RETRIEVAL_QUERY_TEMPLATES, _tokens

    world = World(seed=0)
    retrieval = world.retrieval()
    text = {doc["_id"]: doc["text"] for doc in retrieval["corpus"]}
    judgements = set(RETRIEVAL_JUDGEMENTS.values())
    assert not judgements & {w for t in text.values() for w in _tokens(t)}
    template = set(_tokens(RETRIEVAL_QUERY_TEMPLATES[0].format(thing="", aspect="", city="", judgement="")))
    words = {doc_id: set(_tokens(t)) for doc_id, t in text.items()}
    queries = {q["_id"]: q["text"] for q in retrieval["queries"]["test"]}
    for row in retrieval["qrels"]["test"]:
        content = set(_tokens(queries[row["query-id"]])) - template - judgements  # thing, aspect, city
        assert len(content) == 3
        matches = [doc_id for doc_id, ws in words.items() if content <= ws]
        assert row["corpus-id"] in matches and len(matches) == 2  # the pair shares the query's words
    held = world.held_out_adjectives[0] | world.held_out_adjectives[1]
    test_docs = {r["corpus-id"] for r in retrieval["qrels"]["test"]}
    train_docs = {r["corpus-id"] for r in retrieval["qrels"]["train"]}
    assert not any(held & set(_tokens(text[d])) for d in train_docs)
    rate = sum(bool(held & set(_tokens(text[d]))) for d in test_docs) / len(test_docs)
    assert 0.4 < rate < 0.6


def test_baselines_show_the_tasks_are_not_trivial():
    baselines = measure_baselines(World(seed=0))
    assert baselines["toy-sentiment"]["bag_of_words_nb_accuracy"] < 0.6  # negation and contrast defeat word counts
    assert baselines["toy-nli"]["majority_accuracy"] < 0.4
    assert baselines["toy-ner"]["word_lookup_entity_token_accuracy"] < 0.95
    assert baselines["toy-retrieval"]["random_ndcg@10"] < 0.05
    # The query's words find the pair of reviews but not which of the two is relevant: a tie, so
    # NDCG@10 is (1 + 1/log2(3)) / 2 = 0.815 for word overlap; above it takes the adjective's meaning.
    assert baselines["toy-retrieval"]["term_overlap_ndcg@10"] == pytest.approx(0.815, abs=0.03)


def test_export_writes_every_task(tmp_path):
    out = export_tasks(World(seed=0), tmp_path / "tasks")
    assert json.loads((out / "toy-nli" / "task.json").read_text())["schema"] == "glue/mnli"
    rows = (out / "toy-qa" / "validation.jsonl").read_text().splitlines()
    assert len(rows) == SPLIT_SIZES["validation"] and "answers" in json.loads(rows[0])
    assert (out / "toy-retrieval" / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")
    assert (out / "toy-retrieval" / "corpus.jsonl").is_file() and (out / "toy-retrieval" / "queries.jsonl").is_file()


def test_held_out_words_are_learnable_only_from_the_corpus():
    """Adjectives and names kept out of every training split: validation/test items built on them
    can be solved only with what pretraining taught about those words (the corpus uses them all,
    and its reviews end with the reviewer's verdict, which no task sentence carries)."""
    from encoderlab.data.toyworld import POSITIVE, VERDICTS

    world = World(seed=0)
    tasks = world.tasks()
    held_adjectives = world.held_out_adjectives[0] | world.held_out_adjectives[1]
    assert len(world.held_out_adjectives[1]) == len(POSITIVE) // 2
    words = lambda row: set(row["sentence"].split())  # noqa: E731
    sentiment = tasks["toy-sentiment"]["splits"]
    assert not any(words(r) & held_adjectives for r in sentiment["train"])
    rate = sum(bool(words(r) & held_adjectives) for r in sentiment["test"]) / len(sentiment["test"])
    assert 0.4 < rate < 0.6  # held_out_rate 0.5
    verdicts = {v for phrases in VERDICTS.values() for v in phrases}
    assert not any(v in r["sentence"] for v in verdicts for rows in sentiment.values() for r in rows)
    corpus = " ".join(world.document(i) for i in range(3, 4000, 4))  # the review documents
    assert all(w in corpus for w in held_adjectives) and any(v in corpus for v in verdicts)

    held_names = set().union(*world.held_out_names.values())
    ner = tasks["toy-ner"]["splits"]
    assert not any(held_names & set(r["tokens"]) for r in ner["train"])
    bare_test = [r for r in ner["test"] if len(r["tokens"]) <= 9 and sum(t != 0 for t in r["ner_tags"]) == 1
                 and held_names & set(r["tokens"])]
    assert len(bare_test) > 100  # bare held-out names in uninformative contexts
    for kind, names in world.held_out_names.items():
        assert names and names <= set(world.bare_names[kind])
        assert not names & {w for other, ws in world.bare_names.items() if other != kind for w in ws}

    qa = tasks["toy-qa"]["splits"]  # a question's answer is a bare name of the asked kind
    assert not any(held_names & set(r["context"].split()) for r in qa["train"])
    assert sum(bool(held_names & set(r["context"].split())) for r in qa["test"]) > 150

    easy = World(seed=0, held_out=0.0)  # the difficulty is a parameter: nothing held out
    assert not easy.held_out_adjectives[0] and not set().union(*easy.held_out_names.values())
    with pytest.raises(ValueError, match="held_out must be in"):
        World(seed=0, held_out=1.5)


def test_the_corpus_version_is_part_of_a_toyworld_source_identity():
    from encoderlab.data import parse_source
    from encoderlab.data.toyworld import CORPUS_VERSION

    assert parse_source("toyworld").identity()["corpus_version"] == CORPUS_VERSION


def test_nli_labels_follow_the_reviews_meaning_never_the_hypothesis_words():
    from encoderlab.data.toyworld import NEGATIVE, NLI_LIKED, POSITIVE

    world = World(seed=0)
    splits = world.nli()
    liked = {t.split("{thing}")[0] for t in NLI_LIKED}
    hypotheses = {0: set(), 2: set()}
    for row in splits["train"] + splits["test"]:
        if row["label"] != 1:
            assert any(row["hypothesis"].startswith(p) for p in liked)
            hypotheses[row["label"]].add(row["hypothesis"].split()[1])
    assert hypotheses[0] == hypotheses[2]  # the same claims under both labels
    held = world.held_out_adjectives[0] | world.held_out_adjectives[1]
    train_words = {w for row in splits["train"] for w in row["premise"].split()}
    assert not held & train_words and held <= {w for row in splits["test"] for w in row["premise"].split()}
    assert held < set(POSITIVE) | set(NEGATIVE)
