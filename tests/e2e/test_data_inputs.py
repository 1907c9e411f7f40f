"""Data inputs that are wrong, changed or fail half-way: `data prepare` is one transaction, a prepared
folder is reused only with the same settings, and every bad input is named in a one-line error."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoderlab.config import ConfigError
from encoderlab.data import PackedDataset, iter_documents, load_tokenizer, parse_source, prepare, train_tokenizer
from encoderlab.data.tokenizer import tokenizer_for_shards, tokenizer_info


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "encoderlab.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("encoderlab: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def snapshot(path: Path) -> dict:
    """Every file under ``path`` (hidden ones included) with its bytes: 'left as it was'."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def fingerprint_of(path: Path) -> str:
    return tokenizer_info(load_tokenizer(str(path)), "")["fingerprint"]


def jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Two different small BPE tokenizers (A and B) saved as local directories."""
    root = tmp_path_factory.mktemp("toks")
    train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=300)), 300, root / "A")
    train_tokenizer([f"zebra quartz {i} vortex jumble" for i in range(200)], 320, root / "B")
    return root / "A", root / "B"


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tokenizers):
    out = tmp_path_factory.mktemp("shards") / "toy"
    prepare(parse_source("toyworld", toyworld_documents=600), load_tokenizer(str(tokenizers[0])), "A", out,
            shard_tokens=4000, batch_documents=50, progress=False)
    return out


# -- 1. shards, manifest and tokenizer are written together or not at all ------------------------------------------
def test_failed_prepare_writes_nothing_and_a_later_one_keeps_its_own_tokenizer(tmp_path, tokenizers):
    tok_a, tok_b = tokenizers
    out = tmp_path / "out"
    one_line_error(cli("data", "prepare", tmp_path / "missing", "--tokenizer", tok_a, "-o", out, "--no-progress",
                       cwd=tmp_path), "missing: corpus path not found")
    assert not out.exists()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "alpha beta"}\n{"text": broken\n')
    one_line_error(cli("data", "prepare", corpus, "--tokenizer", tok_a, "-o", out, "--no-progress", cwd=tmp_path),
                   "c.jsonl:2: not valid JSON")
    assert not out.exists()  # was: out/tokenizer (A) saved before the source was read, and never replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no staging or temporary files either
    jsonl(corpus, ["alpha beta", "gamma delta"])
    ok(cli("data", "prepare", corpus, "--tokenizer", tok_b, "-o", out, "--no-progress", cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["tokenizer"]["name"] == str(tok_b)
    assert fingerprint_of(out / "tokenizer") == manifest["tokenizer"]["fingerprint"] == fingerprint_of(tok_b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out"]


def test_a_failed_rebuild_leaves_the_previous_preparation_as_it_was(tmp_path, tokenizers):
    tok_a, tok_b = tokenizers
    corpus = jsonl(tmp_path / "c.jsonl", [f"document {i} about Lyon" for i in range(50)])
    out = tmp_path / "out"
    prepare(parse_source(str(corpus)), load_tokenizer(str(tok_a)), "A", out, shard_tokens=100, progress=False)
    before = snapshot(out)
    with corpus.open("a") as handle:
        handle.write("[1, 2]\n")  # valid JSON, not an object: found after several shards are written
    with pytest.raises(ConfigError, match=r"c.jsonl:51: expected a JSON object"):
        prepare(parse_source(str(corpus)), load_tokenizer(str(tok_b)), "B", out, shard_tokens=100, progress=False,
                overwrite=True)
    assert snapshot(out) == before and fingerprint_of(out / "tokenizer") == fingerprint_of(tok_a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out"]


# -- 2. a failed prepare does not wedge its folder; other settings are refused, not reused ---------------------------
def test_a_failed_prepare_does_not_wedge_its_folder(tmp_path, tokenizers):
    corpus = jsonl(tmp_path / "c.jsonl", [""])
    out = tmp_path / "out"
    one_line_error(cli("data", "prepare", corpus, "--tokenizer", tokenizers[0], "-o", out, "--no-progress",
                       cwd=tmp_path), "no non-empty documents")
    jsonl(corpus, ["now the first document has text"])
    ok(cli("data", "prepare", corpus, "--tokenizer", tokenizers[0], "-o", out, "--no-progress", cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["total_documents"] == 1 and manifest["documents_consumed"] == 1


def test_a_folder_prepared_with_other_settings_is_refused_or_rebuilt_with_overwrite(tmp_path, tokenizers):
    out = tmp_path / "out"
    base = ["data", "prepare", "toyworld", "--toyworld-documents", "40", "--tokenizer", tokenizers[0], "-o", out,
            "--no-progress"]
    ok(cli(*base, "--max-documents", "20", cwd=tmp_path))
    before = snapshot(out)
    one_line_error(cli(*base, "--max-documents", "10", cwd=tmp_path), "already prepared with other settings",
                   "max documents was 20, now 10", "--overwrite")
    assert snapshot(out) == before  # was: the 20-document manifest returned as if it were the 10-document one
    ok(cli(*base, "--max-documents", "10", "--overwrite", cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["total_documents"] == 10 and manifest["settings"]["source"]["max_documents"] == 10


def test_a_trained_tokenizer_of_another_size_is_refused_before_training(tmp_path):
    out = tmp_path / "out"
    base = ["data", "prepare", "toyworld", "--toyworld-documents", "300", "-o", out, "--no-progress"]
    ok(cli(*base, "--train-tokenizer", "300", cwd=tmp_path))
    before = snapshot(out)
    ok(cli(*base, "--train-tokenizer", "300", cwd=tmp_path))  # the same settings: reused as it is
    assert snapshot(out) == before
    one_line_error(cli(*base, "--train-tokenizer", "320", cwd=tmp_path), "trained tokenizer of 300 tokens",
                   "not --train-tokenizer 320", "--overwrite")  # was: the 300-token tokenizer silently reused
    assert snapshot(out) == before
    ok(cli(*base, "--train-tokenizer", "320", "--overwrite", cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokenizer"]["trained"] == {"vocab_size": 320}
    assert fingerprint_of(out / "tokenizer") == manifest["tokenizer"]["fingerprint"] != before


def test_every_setting_that_changes_the_output_is_part_of_the_identity(tmp_path, tokenizers):
    tokenizer = load_tokenizer(str(tokenizers[0]))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "one two", "body": "three"}\n{"text": "four", "body": "five six"}\n')
    (corpus / "b.txt").write_text("line one\nline two\n\nparagraph two\n")
    out = tmp_path / "out"

    def run(**options):
        settings = {k: options.pop(k) for k in ("shard_tokens", "dtype", "overwrite") if k in options}
        return prepare(parse_source(str(corpus), **options), tokenizer, "A", out, progress=False, **settings)

    first = run()
    assert run() == first  # the same settings: the complete folder is returned as it is
    for options, expected in [({"text_column": "body"}, "source text column was 'text', now 'body'"),
                              ({"txt_mode": "line"}, "source txt mode was 'file', now 'line'"),
                              ({"max_documents": 2}, "source max documents was None, now 2"),
                              ({"shard_tokens": 7}, "shard tokens was 67108864, now 7"),
                              ({"dtype": "uint32"}, "dtype was 'uint16', now 'uint32'")]:
        with pytest.raises(ConfigError, match="already prepared with other settings: " + expected):
            run(**options)
    (corpus / "b.txt").write_text("line one edited\n")
    with pytest.raises(ConfigError, match=r"the corpus files changed since"):
        run()
    other = load_tokenizer(str(tokenizers[1]))
    with pytest.raises(ConfigError, match="shards were made with tokenizer 'A'"):
        prepare(parse_source(str(corpus)), other, "B", out, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == first
    rebuilt = run(txt_mode="line", overwrite=True)
    assert rebuilt["total_documents"] == 2 + 1 and rebuilt["settings"]["source"]["txt_mode"] == "line"


def test_an_interrupted_preparation_does_not_resume_over_an_edited_corpus(tmp_path, tokenizers, monkeypatch):
    import encoderlab.data.shards as shard_module

    tokenizer = load_tokenizer(str(tokenizers[0]))
    corpus = jsonl(tmp_path / "c.jsonl", [f"old document {i}" for i in range(40)])
    real = shard_module.iter_documents

    def crashing(source):
        for index, text in enumerate(real(source)):
            if index == 30:
                raise KeyboardInterrupt("simulated crash")
            yield text

    monkeypatch.setattr(shard_module, "iter_documents", crashing)
    with pytest.raises(KeyboardInterrupt):
        prepare(parse_source(str(corpus)), tokenizer, "A", tmp_path / "out", shard_tokens=20, batch_documents=4,
                progress=False)
    assert json.loads((shard_module.staging_dir(tmp_path / "out") / "manifest.json").read_text())["documents_consumed"]
    monkeypatch.setattr(shard_module, "iter_documents", real)
    jsonl(corpus, [f"new text number {i}, a little longer" for i in range(45)])
    manifest = prepare(parse_source(str(corpus)), tokenizer, "A", tmp_path / "out", shard_tokens=20,
                       batch_documents=4, progress=False)
    fresh = prepare(parse_source(str(corpus)), tokenizer, "A", tmp_path / "fresh", shard_tokens=20,
                    batch_documents=4, progress=False)
    assert manifest["total_documents"] == fresh["total_documents"] == 45  # was: resumed, skipping 28 new documents
    a, b = PackedDataset(tmp_path / "out", 16, shuffle=False), PackedDataset(tmp_path / "fresh", 16, shuffle=False)
    assert a.total_tokens == b.total_tokens
    assert all(np.array_equal(a.sample(i)[0], b.sample(i)[0]) for i in range(len(a)))


# -- 3. errors name the file (and line) that is wrong ---------------------------------------------------------------
def test_a_truncated_offsets_file_is_named_not_the_tokens_file(tmp_path, shards):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    offsets = broken / "shard-00000.offsets.npy"
    offsets.write_bytes(offsets.read_bytes()[:-40])
    line = one_line_error(cli("data", "inspect", broken, "--seq-len", "64", cwd=tmp_path),
                          "shard-00000.offsets.npy: unreadable or truncated")
    assert "tokens.npy" not in line
    shutil.copy(shards / "shard-00000.offsets.npy", offsets)
    (broken / "shard-00001.offsets.npy").unlink()
    with pytest.raises(ConfigError, match=r"shard-00001.offsets.npy: missing"):
        PackedDataset(broken, 64)
    shutil.copy(shards / "shard-00001.offsets.npy", broken / "shard-00001.offsets.npy")
    good = np.load(shards / "shard-00001.offsets.npy")
    np.save(broken / "shard-00001.offsets.npy", good[::-1].copy())  # right count, not this shard's offsets
    with pytest.raises(ConfigError, match=r"shard-00001.offsets.npy: not the document offsets"):
        PackedDataset(broken, 64)


def test_a_manifest_that_is_not_json_is_named_with_its_line(tmp_path, shards):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    text = (broken / "manifest.json").read_text().splitlines()
    text[3] = text[3].rstrip(",")  # a missing comma on line 4
    (broken / "manifest.json").write_text("\n".join(text) + "\n")
    one_line_error(cli("data", "inspect", broken, cwd=tmp_path), "manifest.json:5: not valid JSON")
    (broken / "manifest.json").write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="manifest.json: not an encoderlab shard manifest"):
        PackedDataset(broken, 64)
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "../../elsewhere"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="manifest.json: shard entry 0 is not"):
        PackedDataset(broken, 64)


def test_jsonl_lines_that_are_not_json_objects_are_named_with_their_line(tmp_path):
    for line, expected in [("42", "expected a JSON object with a 'text' field, got int"),
                           ("null", "got NoneType"), ('"text"', "got str"), ('["text"]', "got list"),
                           ('{"text": broken}', r"not valid JSON \(Expecting value at column 10\)")]:
        (tmp_path / "c.jsonl").write_text('{"text": "fine"}\n\n' + line + "\n")
        with pytest.raises(ConfigError, match=r"c.jsonl:3: .*" + expected):
            list(iter_documents(parse_source(str(tmp_path / "c.jsonl"))))
    (tmp_path / "c.jsonl").write_text('{"text": "fine"}\n{"text": null}\n')
    with pytest.raises(ConfigError, match=r"c.jsonl:2: column 'text' is empty \(null\)"):
        list(iter_documents(parse_source(str(tmp_path / "c.jsonl"))))
    (tmp_path / "d.json").write_text('[\n  {"text": "one"},\n  {"text": "two"}\n]\n')  # a JSON array of objects
    assert list(iter_documents(parse_source(str(tmp_path / "d.json")))) == ["one", "two"]
    (tmp_path / "d.json").write_text('[\n  {"text": "one"}\n  {"text": "two"}\n]\n')
    with pytest.raises(ConfigError, match=r"d.json:3: not valid JSON"):
        list(iter_documents(parse_source(str(tmp_path / "d.json"))))


# -- 4. disk full: nothing half-written remains ---------------------------------------------------------------------
_REAL_SAVE = np.save


def _disk_full_on_call(monkeypatch, failing_call: int):
    calls = {"n": 0}

    def save(handle, array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call:
            handle.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _REAL_SAVE(handle, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    return calls


@pytest.mark.parametrize("failing_call", [1, 4])  # the first shard's tokens; the second shard's offsets
def test_disk_full_while_writing_shards_leaves_nothing_half_written(tmp_path, tokenizers, monkeypatch, failing_call):
    tokenizer = load_tokenizer(str(tokenizers[0]))
    source = parse_source("toyworld", toyworld_documents=200)
    root = tmp_path / "root"
    root.mkdir()
    _disk_full_on_call(monkeypatch, failing_call)
    with pytest.raises(OSError) as caught:
        prepare(source, tokenizer, "A", root / "new" / "fresh", shard_tokens=2000, progress=False)
    assert caught.value.errno == errno.ENOSPC
    assert list(root.iterdir()) == []  # no output, no staging folder, no temporary file, no parent folder made

    monkeypatch.setattr(np, "save", _REAL_SAVE)
    prepare(parse_source("toyworld", toyworld_documents=50), tokenizer, "A", root / "kept", shard_tokens=2000,
            progress=False)
    before = snapshot(root)
    _disk_full_on_call(monkeypatch, failing_call)
    with pytest.raises(OSError):
        prepare(source, tokenizer, "A", root / "kept", shard_tokens=2000, progress=False, overwrite=True)
    assert snapshot(root) == before and sorted(p.name for p in root.iterdir()) == ["kept"]


# -- the rest of the class: empty inputs, unreadable files, bad encodings, bad numbers, missing paths ---------------
def test_zero_and_negative_counts_are_refused_before_anything_is_written(tmp_path, tokenizers):
    out = tmp_path / "out"
    one_line_error(cli("data", "prepare", "toyworld", "--max-documents", "0", "--tokenizer", tokenizers[0], "-o", out,
                       cwd=tmp_path), "argument --max-documents: expected a positive integer, got 0")
    assert not out.exists()  # was: out/tokenizer saved, then "no non-empty documents"
    one_line_error(cli("data", "inspect", tmp_path, "--seq-len", "0", cwd=tmp_path),
                   "argument --seq-len: expected a positive integer, got 0")  # was: ZeroDivisionError traceback
    for options in ({"toyworld_documents": 0}, {"toyworld_documents": -5}, {"toyworld_seed": -1},
                    {"max_documents": -1}, {"max_documents": 0}):
        with pytest.raises(ConfigError, match="expected a whole number"):
            parse_source("toyworld", **options)
    with pytest.raises(ConfigError, match="shard tokens: expected a whole number >= 1, got 0"):
        prepare(parse_source("toyworld", toyworld_documents=5), load_tokenizer(str(tokenizers[0])), "A", out,
                shard_tokens=0, progress=False)
    assert not out.exists()


def test_packed_dataset_numbers_are_checked(shards):
    with pytest.raises(ConfigError, match="seq_len: expected a whole number >= 1, got 0"):
        PackedDataset(shards, 0)
    with pytest.raises(ConfigError, match="seq_len: expected a whole number >= 25, got 20"):
        PackedDataset(shards, 20, variable_length=True)  # was: numpy "high <= low"
    with pytest.raises(ConfigError, match="seed: expected a whole number >= 0, got -1"):
        PackedDataset(shards, 64, seed=-1)


def test_tokenizer_training_refuses_before_reading_and_on_an_empty_corpus(tmp_path):
    (tmp_path / "exists").mkdir()

    def must_not_be_read():
        raise AssertionError("the corpus was read before the output was checked")
        yield

    with pytest.raises(FileExistsError, match="exists: already exists"):
        train_tokenizer(must_not_be_read(), 300, tmp_path / "exists")
    with pytest.raises(ConfigError, match="no non-empty documents"):
        train_tokenizer(["", "  \n"], 300, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ConfigError, match="vocab_size 299: byte-level BPE needs at least 300"):
        tokenizer_for_shards(tmp_path / "out", train_vocab=299, documents=must_not_be_read())


def test_both_tokenizer_options_are_refused(tmp_path, tokenizers):
    one_line_error(cli("data", "prepare", "toyworld", "--tokenizer", tokenizers[0], "--train-tokenizer", "300",
                       "-o", tmp_path / "out", cwd=tmp_path), "not both")
    assert not (tmp_path / "out").exists()


def test_output_folders_that_are_not_shards_are_refused(tmp_path, tokenizers):
    tokenizer = load_tokenizer(str(tokenizers[0]))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    jsonl(corpus / "a.jsonl", ["one", "two"])
    with pytest.raises(ConfigError, match="inside the corpus folder"):
        prepare(parse_source(str(corpus)), tokenizer, "A", corpus / "shards", progress=False)
    assert sorted(p.name for p in corpus.iterdir()) == ["a.jsonl"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("my notes")
    with pytest.raises(ConfigError, match="holds files that are not token shards \\(notes.md\\)"):
        prepare(parse_source(str(corpus)), tokenizer, "A", mine, progress=False, overwrite=True)
    assert snapshot(mine) == {"notes.md": b"my notes"}
    # what a failed prepare of the old code left (a tokenizer, no manifest) is replaced
    leftover = tmp_path / "leftover"
    shutil.copytree(tokenizers[1], leftover / "tokenizer")
    prepare(parse_source(str(corpus)), tokenizer, "A", leftover, progress=False)
    assert fingerprint_of(leftover / "tokenizer") == fingerprint_of(tokenizers[0])


def test_source_specs_and_paths_are_checked(tmp_path):
    for spec, expected in [("", "source: empty"), ("hf:", "expected hf:ID"), ("hf:a:b:c:d", "expected hf:ID")]:
        with pytest.raises(ConfigError, match=expected):
            parse_source(spec)
    with pytest.raises(ConfigError, match="text column '': expected a column name"):
        parse_source(str(tmp_path), text_column="")
    (tmp_path / "notes.md").write_text("not a corpus file")
    with pytest.raises(ConfigError, match="notes.md: unsupported file type"):
        parse_source(str(tmp_path / "notes.md")).identity()


def test_file_encodings_and_names(tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / ".hidden.txt").write_bytes(b"\xff\xfe not utf-8")  # editor/OS droppings are skipped
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.jsonl").write_text("not json")
    (folder / "A.TXT").write_text("upper-case suffix")  # was: skipped silently
    (folder / "b.csv").write_bytes("\ufefftext,label\nwith a BOM,1\n".encode())  # was: no column 'text' ('\ufefftext')
    (folder / "c.txt").write_bytes(b"para one\r\nstill one\r\n\r\npara two\r\n  \r\npara three")
    docs = list(iter_documents(parse_source(str(folder), txt_mode="paragraph")))
    assert docs == ["upper-case suffix", "with a BOM", "para one\nstill one", "para two", "para three"]  # was: CRLF
    # paragraphs not split
    (folder / "d.txt").write_bytes(b"\xef\xbb\xbfcaf\xe9")
    with pytest.raises(ConfigError, match=r"d.txt: not valid UTF-8 at byte 6"):
        list(iter_documents(parse_source(str(folder / "d.txt"))))

    def unreadable(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(ConfigError, match=r"A.TXT: cannot read \(Permission denied\)"):
        list(iter_documents(parse_source(str(folder))))


def test_delimited_files(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"line one\nline two",1\n')
    assert list(iter_documents(parse_source(str(tmp_path / "a.csv")))) == ["line one\nline two"]  # was: "line oneline two"
    long = "word " * 40_000  # 200 KB: over the csv module's default field limit
    (tmp_path / "b.tsv").write_text(f"text\tlabel\n{long}\t1\n")
    assert list(iter_documents(parse_source(str(tmp_path / "b.tsv")))) == [long]  # was: _csv.Error traceback
    (tmp_path / "c.csv").write_text("label,text\n1\n")
    with pytest.raises(ConfigError, match=r"c.csv:2: fewer fields than the 2 of the header"):
        list(iter_documents(parse_source(str(tmp_path / "c.csv"))))
    (tmp_path / "d.csv").write_text("body,label\n")  # a header without the column, no rows
    with pytest.raises(ConfigError, match=r"d.csv:1: no text column 'text'; columns are body, label"):
        list(iter_documents(parse_source(str(tmp_path / "d.csv"))))


def test_parquet_columns_that_are_not_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(ConfigError, match=r"ints.parquet: column 'text' holds int64, expected text"):
        list(iter_documents(parse_source(str(tmp_path / "ints.parquet"))))  # was: ints, then AttributeError
    pq.write_table(pa.table({"text": ["one", None]}), tmp_path / "nulls.parquet")
    with pytest.raises(ConfigError, match=r"nulls.parquet: row 1: column 'text' is empty \(null\)"):
        list(iter_documents(parse_source(str(tmp_path / "nulls.parquet"))))
    (tmp_path / "fake.parquet").write_text("not parquet at all")
    with pytest.raises(ConfigError, match=r"fake.parquet: not a readable Parquet file"):
        list(iter_documents(parse_source(str(tmp_path / "fake.parquet"))))


def test_max_documents_reads_nothing_past_them(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "one"}\n{"text": "two"}\nbroken\n')
    assert list(iter_documents(parse_source(str(tmp_path / "c.jsonl"), max_documents=2))) == ["one", "two"]
