"""Corpus sources, tokenizers, token shards and the packed loader."""

import json

import numpy as np
import pytest
import torch

from encoderlab.config import ConfigError
from encoderlab.data import PackedDataset, iter_documents, load_tokenizer, parse_source, prepare, train_tokenizer
from encoderlab.data.packed import _Permutation
from encoderlab.data.shards import token_dtype
from encoderlab.data.tokenizer import encode_documents, ensure_mask_token
from encoderlab.training.data import micro_batches
from testkit import SHARED



@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    return train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=3000)), 600, out), out


@pytest.fixture(scope="module")
def shards(tmp_path_factory, toy_tokenizer):
    tokenizer, _ = toy_tokenizer
    out = tmp_path_factory.mktemp("shards") / "toy"
    prepare(parse_source("toyworld", toyworld_documents=2000), tokenizer, "toy", out, shard_tokens=5000,
            batch_documents=100, progress=False)
    return out


def test_local_sources_of_every_format(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nsecond line\n\nnew paragraph")
    (tmp_path / "b.jsonl").write_text('{"text": "json one"}\n\n{"text": "json two"}\n')
    (tmp_path / "c.tsv").write_text("text\tlabel\ntsv one\t1\n")
    (tmp_path / "d.csv").write_text('text,label\n"csv, one",0\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["parquet one", "parquet two"], "n": [1, 2]}), tmp_path / "e.parquet")
    docs = list(iter_documents(parse_source(str(tmp_path))))
    assert docs == ["first doc\nsecond line\n\nnew paragraph", "json one", "json two", "tsv one", "csv, one",
                    "parquet one", "parquet two"]
    assert list(iter_documents(parse_source(str(tmp_path / "a.txt"), txt_mode="paragraph"))) == [
        "first doc\nsecond line", "new paragraph"]
    assert len(list(iter_documents(parse_source(str(tmp_path / "a.txt"), txt_mode="line")))) == 3
    assert len(list(iter_documents(parse_source(str(tmp_path), max_documents=2)))) == 2


def test_source_errors_name_the_input(tmp_path):
    with pytest.raises(ConfigError, match="corpus path not found"):
        list(iter_documents(parse_source(str(tmp_path / "missing"))))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no corpus files"):
        list(iter_documents(parse_source(str(tmp_path / "empty"))))
    (tmp_path / "x.jsonl").write_text('{"body": "hi"}\n')
    with pytest.raises(ConfigError, match=r"x.jsonl:1: no text column 'text'; columns are body"):
        list(iter_documents(parse_source(str(tmp_path / "x.jsonl"))))
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(ConfigError, match=r"bad.txt: not valid UTF-8 at byte 3"):
        list(iter_documents(parse_source(str(tmp_path / "bad.txt"))))


@pytest.mark.skipif(not (SHARED / "sst2" / "validation.tsv").is_file(), reason="shared datasets not available")
def test_genuine_sst2_file_reads_as_a_corpus():
    docs = list(iter_documents(parse_source(str(SHARED / "sst2" / "validation.tsv"), text_column="sentence")))
    assert len(docs) == 872
    first_line = (SHARED / "sst2" / "validation.tsv").read_text().splitlines()[1]
    assert docs[0] == first_line.split("\t")[0]


def test_trained_tokenizer_frames_documents_and_has_a_mask(toy_tokenizer):
    tokenizer, path = toy_tokenizer
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id) == (0, 1, 2, 3)
    ids = encode_documents(tokenizer, ["Alice lives in Lyon."])[0]
    assert ids[0] == 1 and ids[-1] == 2 and tokenizer.decode(ids[1:-1]) == "Alice lives in Lyon."
    assert load_tokenizer(str(path)).mask_token_id == 3


def test_mask_token_is_mapped_or_added_explicitly():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|begin_of_text|>": 0, "<|end_of_text|>": 1, "<|reserved_special_token_0|>": 2, "a": 3}
    llama_like = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="a")))
    assert ensure_mask_token(llama_like) == "mapped" and llama_like.mask_token_id == 2
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")))
    assert ensure_mask_token(plain) == "added" and plain.mask_token_id == 2 and len(plain) == 3


def test_packed_samples_are_exactly_the_naively_tokenized_stream(shards, toy_tokenizer):
    tokenizer, _ = toy_tokenizer
    docs = list(iter_documents(parse_source("toyworld", toyworld_documents=2000)))
    encoded = encode_documents(tokenizer, docs)
    stream = np.concatenate([np.asarray(d) for d in encoded])
    starts = set(np.cumsum([0] + [len(d) for d in encoded[:-1]]).tolist())
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["total_tokens"] == stream.size and manifest["total_documents"] == 2000
    assert len(manifest["shards"]) > 3 and manifest["dtype"] == "uint16" and manifest["complete"]
    dataset = PackedDataset(shards, seq_len=64, shuffle=False)
    assert len(dataset) == -(-stream.size // 64)
    for index in (0, 1, 17, len(dataset) - 1):
        ids, doc_ids = dataset.sample(index)
        expected = stream[index * 64 : (index + 1) * 64]
        assert np.array_equal(ids[: expected.size], expected)
        boundaries = [t for t in range(expected.size) if t == 0 or doc_ids[t] != doc_ids[t - 1]]
        true_starts = [t for t in range(expected.size) if index * 64 + t in starts]
        assert boundaries == sorted(set([0] + true_starts))
        assert (doc_ids[expected.size :] == -1).all()  # only the last sequence has padding


def test_long_documents_are_split_and_counted(shards):
    dataset = PackedDataset(shards, seq_len=16, shuffle=False)
    assert dataset.stats["documents_longer_than_seq_len"] > 0
    assert dataset.stats["tokens"] == sum(s["tokens"] for s in dataset.manifest["shards"])


def test_global_order_is_a_seeded_bijection_and_rank_independent(shards):
    permutation = _Permutation(1000, seed=3)
    assert sorted(permutation(i) for i in range(1000)) == list(range(1000))
    assert [permutation(i) for i in range(10)] != list(range(10))
    a, b = PackedDataset(shards, 64, seed=3), PackedDataset(shards, 64, seed=3)
    for index in (0, 5, 99):
        assert np.array_equal(a.sample(index)[0], b.sample(index)[0])  # a resumed run reads the same
    one = micro_batches(a, step=4, global_batch=8, micro_batch=2, rank=0, world_size=1, device=torch.device("cpu"))
    two = [b for rank in range(2) for b in micro_batches(a, 4, 8, 2, rank, 2, torch.device("cpu"))]
    assert torch.equal(torch.cat([m.input_ids for m in one]), torch.cat([m.input_ids for m in two]))
    assert torch.equal(torch.cat([m.sample_index for m in one]), torch.arange(32, 40))


def test_variable_length_samples_split_each_sequence_in_two(shards):
    fixed = PackedDataset(shards, 64, shuffle=False)
    variable = PackedDataset(shards, 64, shuffle=False, variable_length=True)
    assert len(variable) == 2 * len(fixed)
    ids, _ = fixed.sample(3)
    first, first_docs = variable.sample(6)
    second, second_docs = variable.sample(7)
    cut = int((first_docs >= 0).sum())
    assert 12 <= cut < 52
    assert np.array_equal(np.concatenate([first[:cut], second[: 64 - cut]]), ids)


def test_bad_shards_and_dtypes_are_refused(shards, tmp_path, toy_tokenizer):
    with pytest.raises(ConfigError, match="70000 tokens does not fit; use uint32"):
        token_dtype(70_000, "uint16")
    assert token_dtype(128_256) == np.uint32 and token_dtype(50_000) == np.uint16
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    first = broken / "shard-00000.tokens.npy"
    first.write_bytes(first.read_bytes()[:-100])
    with pytest.raises(ConfigError, match="shard-00000.tokens.npy: unreadable or truncated"):
        PackedDataset(broken, 64)
    other = train_tokenizer(["some other corpus entirely"] * 50, 300, tmp_path / "other-tok")
    with pytest.raises(ConfigError, match="shards were made with tokenizer 'toy'"):
        prepare(parse_source("toyworld", toyworld_documents=2000), other, "other", shards, progress=False)


def test_interrupted_preparation_resumes_to_the_same_shards(tmp_path, toy_tokenizer, shards, monkeypatch):
    import encoderlab.data.shards as shard_module

    tokenizer, _ = toy_tokenizer
    real = shard_module.iter_documents

    def crashing(source):
        for index, text in enumerate(real(source)):
            if index == 1500:
                raise KeyboardInterrupt("simulated crash")
            yield text

    monkeypatch.setattr(shard_module, "iter_documents", crashing)
    source = parse_source("toyworld", toyworld_documents=2000)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare(source, tokenizer, "toy", out, shard_tokens=5000, batch_documents=100, progress=False)
    assert not out.exists()  # the output appears complete or not at all; the resume point is staged beside it
    staged = shard_module.staging_dir(out)
    partial = json.loads((staged / "manifest.json").read_text())
    assert not partial["complete"] and 0 < len(partial["shards"])
    assert not [p.name for p in staged.iterdir() if p.name.startswith(".")]  # no half-written temporaries
    monkeypatch.setattr(shard_module, "iter_documents", real)
    with pytest.raises(ConfigError, match="did not complete"):
        PackedDataset(staged, 64)
    manifest = prepare(source, tokenizer, "toy", out, shard_tokens=5000, batch_documents=100, progress=False)
    assert manifest["complete"] and manifest["total_documents"] == 2000
    a, b = PackedDataset(out, 64, shuffle=False), PackedDataset(shards, 64, shuffle=False)
    assert a.total_tokens == b.total_tokens
    for index in range(0, len(a), 37):
        assert np.array_equal(a.sample(index)[0], b.sample(index)[0])
        assert np.array_equal(a.sample(index)[1], b.sample(index)[1])


def test_hf_source_streams_through_datasets_from_a_local_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "local-dataset" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"content": ["streamed one", "streamed two", "streamed three"]}), folder / "train.parquet")
    source = parse_source(f"hf:{tmp_path / 'local-dataset'}", text_column="content")
    assert list(iter_documents(source)) == ["streamed one", "streamed two", "streamed three"]
    with pytest.raises(ConfigError, match="no text column 'text'; columns are content"):
        list(iter_documents(parse_source(f"hf:{tmp_path / 'local-dataset'}")))


def test_a_named_tokenizer_is_kept_beside_the_shards_with_its_mask_origin(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from encoderlab.data.tokenizer import tokenizer_for_shards

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(tmp_path / "no-mask")
    shards = tmp_path / "shards"
    tokenizer, name, origin = tokenizer_for_shards(shards, name=str(tmp_path / "no-mask"))
    assert origin == "added" and tokenizer.mask_token_id == 3 and name == str(tmp_path / "no-mask")
    assert not shards.exists()  # saved by prepare, with the shards
    (tmp_path / "c.txt").write_text("a b a\n")
    manifest = prepare(parse_source(str(tmp_path / "c.txt")), tokenizer, name, shards, mask_origin=origin,
                       progress=False)
    assert manifest["tokenizer"]["mask_origin"] == "added" and manifest["tokenizer"]["mask_token_id"] == 3
    assert (shards / "tokenizer" / "tokenizer_config.json").is_file()  # checkpoints copy it from here
    assert load_tokenizer(str(shards / "tokenizer")).mask_token_id == 3
    with pytest.raises(ConfigError, match="give a tokenizer name or a vocabulary size"):
        tokenizer_for_shards(tmp_path / "other")
