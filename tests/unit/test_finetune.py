"""Fine-tuning runs and sweeps on CPU with a tiny model on the toyworld tasks."""

import math
import sqlite3

import pytest

from encoderlab.config import ConfigError
from encoderlab.data import iter_documents, parse_source
from encoderlab.evaluation.finetune import Backbone, FinetuneConfig, finetune, qa_features, tc_features
from encoderlab.evaluation.metrics import normalize_answer
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import TOYWORLD_TASKS, load_task
from testkit import FAST


def test_features_label_first_sub_tokens_and_find_answers(tiny_checkpoint):
    backbone = Backbone(str(tiny_checkpoint))
    task = load_task("toy-ner")
    rows = task.splits["train"][:20]
    for row, feature in zip(rows, tc_features(backbone, rows, 128, {})):
        labelled = [label for label in feature["labels"] if label != -100]
        assert labelled == row["ner_tags"] and len(feature["first"]) == len(row["tokens"])
        assert feature["ids"][0] == 1 and feature["ids"][-1] == 2  # framed like pretraining documents
    qa = load_task("toy-qa").splits["train"][:40]
    counter = {}
    # toy contexts are one short sentence: a 32-token window with a 4-token stride makes them slide
    features = qa_features(backbone, qa, FinetuneConfig(doc_stride=4, max_question_tokens=16), 32, counter)
    assert counter.get("windowed", 0) > 0
    for row in qa:
        windows = [f for f in features if qa[f["example"]] is row]
        if row["answers"]["text"]:
            hits = [f for f in windows if f["start"] > 0]
            assert hits, row["id"]
            f = hits[0]
            a, b = f["offsets"][f["start"] - f["context_offset"]][0], f["offsets"][f["end"] - f["context_offset"]][1]
            assert normalize_answer(row["context"][a:b]) == normalize_answer(row["answers"]["text"][0])
        else:
            assert all(f["start"] == f["end"] == 0 for f in windows)


def test_retrieval_texts_are_tokenized_in_one_call_as_one_by_one(tiny_checkpoint):
    from encoderlab.evaluation.features import document_text, ir_framed

    backbone = Backbone(str(tiny_checkpoint))
    texts = [document_text(d, FAST) for d in load_task("toy-retrieval").corpus[:200]] + ["", "a"]
    counted = {}
    framed = ir_framed(backbone, texts, 12, counted)
    one_by_one = [backbone.frame(backbone.encode(t)[:10]) for t in texts]
    assert framed == one_by_one and framed[-2] == backbone.frame([])
    assert counted["truncated"] == sum(len(backbone.encode(t)) > 10 for t in texts) > 0
    assert ir_framed(backbone, [], 12, counted) == []


@pytest.mark.parametrize("name", TOYWORLD_TASKS)
def test_every_task_type_trains_and_scores(tiny_checkpoint, name):
    result = finetune(str(tiny_checkpoint), load_task(name), lr=1e-3, seed=0, config=FAST)
    assert result.status == "ok" and result.steps == 4
    assert 0.0 <= result.test <= 100.0 and 0.0 <= result.validation <= 100.0
    assert result.test_items and all(0.0 <= x <= 1.0 for x in result.test_items)


def test_same_seed_same_result_and_divergence_is_recorded(tiny_checkpoint):
    task = load_task("toy-sentiment")
    a = finetune(str(tiny_checkpoint), task, lr=1e-3, seed=3, config=FAST)
    b = finetune(str(tiny_checkpoint), task, lr=1e-3, seed=3, config=FAST)
    assert a.test == b.test and a.test_items == b.test_items
    exploded = finetune(str(tiny_checkpoint), task, lr=1e30, seed=0, config=FAST)
    assert exploded.status == "diverged" and math.isnan(exploded.test)


def test_transformers_encoders_use_the_same_heads(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(iter_documents(parse_source("toyworld", toyworld_documents=500)),
                                trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(tmp_path / "bert")
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bert")
    result = finetune(str(tmp_path / "bert"), load_task("toy-nli"), lr=1e-3, seed=0, config=FAST)
    assert result.status == "ok" and 0 <= result.test <= 100


def test_zero_shot_tasks_are_trained_on_their_source_and_tested_on_their_own_data(tiny_checkpoint, tmp_path):
    from encoderlab.data import World, export_tasks

    export_tasks(World(seed=0), tmp_path / "ms")  # toy retrieval in the BEIR layout stands in for MS MARCO ...
    export_tasks(World(seed=1), tmp_path / "nq")  # ... and another world's for NQ (test qrels only are read)
    rows = run_sweep(str(tiny_checkpoint), ["nq"], [1e-3], [0], tmp_path / "r.sqlite", FAST, progress=False,
                     local_dirs={"msmarco": str(tmp_path / "ms" / "toy-retrieval"),
                                 "nq": str(tmp_path / "nq" / "toy-retrieval")})
    assert rows[0]["task"] == "nq" and 0 <= rows[0]["mean"] <= 100
    record = sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT dataset, status FROM runs").fetchall()
    assert record == [("nq", "ok")]


def test_retrieval_chunk_size_is_validated():
    with pytest.raises(ConfigError, match="retrieval_chunk_docs must be a positive integer"):
        FinetuneConfig(retrieval_chunk_docs=0)


@pytest.mark.parametrize("chunk_docs", [7, 64, 1000])
def test_corpus_ranking_in_chunks_matches_the_full_score_matrix(chunk_docs):
    import torch

    from encoderlab.evaluation.retrieval import RETRIEVAL_DEPTH, rank_corpus

    generator = torch.Generator().manual_seed(0)
    corpus = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(250)]
    vectors = torch.nn.functional.normalize(torch.randn(250, 16, generator=generator), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(5, 16, generator=generator), dim=-1)
    pool = {f"d{i}" for i in range(0, 250, 3)}  # judged documents: a third of the corpus

    def embed_range(start, stop):  # the embedding of document i is row i
        return vectors[start:stop]

    run, pool_run = rank_corpus([d["_id"] for d in corpus], queries, [f"q{j}" for j in range(5)], pool, embed_range,
                                chunk_docs)
    scores = queries @ vectors.T
    for j in range(5):
        full = [f"d{i}" for i in scores[j].argsort(descending=True)[:RETRIEVAL_DEPTH].tolist()]
        assert list(run[f"q{j}"]) == full
        assert run[f"q{j}"][full[0]] == pytest.approx(scores[j].max().item())
        in_pool = [f"d{i}" for i in scores[j].argsort(descending=True).tolist() if f"d{i}" in pool]
        assert list(pool_run[f"q{j}"]) == in_pool[:RETRIEVAL_DEPTH]  # exact within the pool, all 84 of it
