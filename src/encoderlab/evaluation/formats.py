"""Readers of the file formats the evaluation datasets ship in, each returning rows in the hub schema.

Every reader names the file (and line or row) of what it cannot read: a malformed row is a
:class:`~encoderlab.config.ConfigError`, never a silently dropped or truncated value. Which file of
which task is read by which reader, and as which split, is in :mod:`encoderlab.evaluation.tasks`.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Iterator

from encoderlab.config import ConfigError
from encoderlab.io import atomic_write_text
from encoderlab.validate import repeats

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
UNER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
_INTEGER = re.compile(r"[+-]?\d+")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a text file, gzip-compressed when it ends in ``.gz``.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (``str.splitlines`` would also split inside
    texts holding U+2028, U+0085 or form feeds, which the datasets' sentences may contain)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\n")


def read_jsonl(path: Path) -> list[dict]:
    """JSON lines (``.jsonl``, ``.jsonl.gz``, and tner's ``.json`` files, which are JSON lines too)."""
    rows = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not a JSON line ({err.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_rows(path: Path) -> list[dict]:
    """Hub-schema rows from ``.jsonl`` / ``.jsonl.gz`` / ``.json`` (JSON lines) or ``.parquet``."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_jsonl(path)
    raise ConfigError(f"{path}: unsupported file type (expected .jsonl, .jsonl.gz, .json lines or .parquet)")


def parse_label(value, names: tuple[str, ...], where: str) -> int:
    """A class id: an int, a string of an int (tsv), or one of ``names``; anything else is an error."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if _INTEGER.fullmatch(value.strip()):
            return int(value)
        if value in names:
            return names.index(value)
    raise ConfigError(f"{where}: label {value!r} is not an integer class id nor one of {list(names)}")


# -- GLUE ---------------------------------------------------------------------------------------
# GLUE's own column names -> the hub schema's (MNLI: sentence1/sentence2/gold_label; QQP: is_duplicate)
_GLUE_ALIASES = {"premise": ("premise", "sentence1"), "hypothesis": ("hypothesis", "sentence2"),
                 "label": ("label", "gold_label", "is_duplicate")}


def read_glue_tsv(path: Path, text_fields: tuple[str, ...], label_names: tuple[str, ...]) -> list[dict]:
    """A GLUE tsv (header line, tab separated, no quoting) -> hub-schema rows (text fields, label, idx).

    Reads GLUE's files (SST-2 ``sentence label``; QQP ``id qid1 qid2 question1 question2
    is_duplicate``; MNLI ``index promptID pairID genre ... sentence1 sentence2 label1 [label2..5]
    gold_label`` with string labels) and hub-schema tsv files. ``idx`` is the row's ``idx`` column,
    else its position (as the hub's). A row with another number of fields than the header (a tab or
    line break inside a text) is an error naming file:line, and so is a file without labels (GLUE's
    ``test.tsv``)."""
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None:
        raise ConfigError(f"{path}: empty file (expected a GLUE tsv with a header line)")
    header = first[1].split("\t")
    columns = {}
    for field in (*text_fields, "label"):
        found = [c for c in _GLUE_ALIASES.get(field, (field,)) if c in header]
        if not found:
            hint = (" (GLUE's test.tsv files have no labels: our test split is GLUE's dev.tsv)"
                    if field == "label" else "")
            raise ConfigError(f"{path}: no column {' / '.join(_GLUE_ALIASES.get(field, (field,)))} in the header "
                              f"{header}{hint}")
        columns[field] = header.index(found[0])
    idx_column = header.index("idx") if "idx" in header else None
    rows = []
    for number, line in lines:
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header) and not (len(fields) > len(header) and not any(fields[len(header):])):
            raise ConfigError(f"{path}:{number}: {len(fields)} tab-separated fields, the header has {len(header)} "
                              "(a tab or a line break inside a text?); fix or drop that row")
        row = {field: fields[column] for field, column in columns.items() if field != "label"}
        row["label"] = parse_label(fields[columns["label"]], label_names, f"{path}:{number}")
        row["idx"] = len(rows)
        if idx_column is not None:
            if not _INTEGER.fullmatch(fields[idx_column].strip()):
                raise ConfigError(f"{path}:{number}: idx {fields[idx_column]!r} is not an integer")
            row["idx"] = int(fields[idx_column])
        rows.append(row)
    return rows


# -- token classification -----------------------------------------------------------------------
def iob2_error(tags: list[str]) -> int | None:
    """The position of the first tag that breaks IOB2 (an ``I-X`` that follows neither ``B-X`` nor
    ``I-X``: every entity starts with ``B-``), or None. IOB1 files (CoNLL-2003's original
    distribution) start entities with ``I-``: strict entity F1 would find none of them."""
    previous = "O"
    for position, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return position
        previous = tag
    return None


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 -> IOB2: an ``I-X`` that starts an entity (after ``O`` or another type) becomes ``B-X``."""
    out, previous = [], "O"
    for tag in tags:
        out.append(f"B-{tag[2:]}" if tag.startswith("I-") and previous[2:] != tag[2:] else tag)
        previous = tag
    return out


IOB1_HINT = ("; the file looks like IOB1 (entities starting with I-, as in CoNLL-2003's original distribution): "
             "convert it with `encoderlab data iob1-to-iob2 FILE OUTPUT`")


def _check_sentence(path: Path, tags: list[str], lines: list[int]) -> None:
    bad = iob2_error(tags)
    if bad is not None:
        before = tags[bad - 1] if bad else "the sentence start"
        raise ConfigError(f"{path}:{lines[bad]}: tag {tags[bad]} follows {before}, which IOB2 does not allow (an "
                          f"entity starts with B-){IOB1_HINT}")


def read_conll(path: Path) -> list[dict]:
    """CoNLL-2003 raw format: ``tok POS CHUNK NER`` lines; -DOCSTART- and blank lines end sentences.
    The NER tags must be IOB2 (checked per sentence, the line named)."""
    rows, tokens, tags, lines = [], [], [], []

    def end_sentence():
        if tokens:
            _check_sentence(path, tags, lines)
            rows.append({"id": str(len(rows)), "tokens": list(tokens), "ner_tags": [CONLL_TAGS.index(t) for t in tags]})
        tokens.clear(), tags.clear(), lines.clear()

    for number, line in iter_lines(path):
        if not line.strip() or line.startswith("-DOCSTART-"):
            end_sentence()
            continue
        parts = line.split(" ")
        if len(parts) != 4 or parts[3] not in CONLL_TAGS:
            raise ConfigError(f"{path}:{number}: expected 'token POS CHUNK NER' with an IOB2 tag, got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[3])
        lines.append(number)
    end_sentence()
    return rows


def convert_iob1_file(source: Path, target: Path) -> tuple[int, int]:
    """Writes ``source`` (CoNLL ``tok POS CHUNK NER`` lines, or UNER ``index<TAB>token<TAB>tag`` lines)
    to ``target`` with its NER tags converted from IOB1 to IOB2, every other byte kept; returns
    (sentences, tags changed)."""
    text = source.read_text(encoding="utf-8")
    out, sentence, changed, sentences = [], [], 0, 0
    tab = "\t" in text.split("\n", 1)[0] or source.suffix == ".iob2"

    def flush():
        nonlocal changed, sentences
        if not sentence:
            return
        sentences += 1
        fields = [line.split("\t" if tab else " ") for line in sentence]
        column = 2 if tab else 3
        tags = [f[column] if len(f) > column else "O" for f in fields]
        for f, new in zip(fields, iob1_to_iob2(tags)):
            if len(f) > column and f[column] != new:
                f[column], changed = new, changed + 1
        out.extend(("\t" if tab else " ").join(f) for f in fields)
        sentence.clear()

    for line in text.split("\n"):
        if not line.strip() or line.startswith(("-DOCSTART-", "#")):
            flush()
            out.append(line)
        else:
            sentence.append(line)
    flush()

    atomic_write_text(target, "\n".join(out))
    return sentences, changed


def read_iob2(path: Path) -> list[dict]:
    """UNER ``.iob2``: ``index<TAB>token<TAB>tag<TAB>...`` lines under ``# sent_id`` / ``# text`` comments."""
    rows, tokens, tags, lines, sent_id = [], [], [], [], None
    for number, line in [*iter_lines(path), (0, "")]:
        if line.startswith("# sent_id"):
            sent_id = line.split("=", 1)[1].strip()
        elif line.startswith("#"):
            continue
        elif not line.strip():
            if tokens:
                _check_sentence(path, [UNER_TAGS[t] for t in tags], lines)
                rows.append({"idx": sent_id or str(len(rows)), "tokens": tokens, "ner_tags": tags})
            tokens, tags, lines, sent_id = [], [], [], None
        else:
            parts = line.split("\t")
            if len(parts) < 3 or parts[2] not in UNER_TAGS:
                raise ConfigError(f"{path}:{number}: expected 'index<TAB>token<TAB>IOB2 tag', got {line!r}")
            tokens.append(parts[1])
            tags.append(UNER_TAGS.index(parts[2]))
            lines.append(number)
    return rows


# -- extractive QA ------------------------------------------------------------------------------
def read_squad_json(path: Path) -> list[dict]:
    """SQuAD's official JSON (``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``;
    v2.0 questions with ``is_impossible`` have no answers) -> one hub-schema row per question:
    id, title, context, question, answers {text: [...], answer_start: [...]}."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a JSON document ({err.msg}, line {err.lineno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ConfigError(f"{path}: expected SQuAD's JSON layout {{'version', 'data': [articles]}}")
    rows = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = qa["answers"]
                    rows.append({"id": str(qa["id"]), "title": article.get("title", ""),
                                 "context": paragraph["context"], "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in answers],
                                             "answer_start": [int(a["answer_start"]) for a in answers]}})
    except (KeyError, TypeError, ValueError) as err:
        where = f"question {rows[-1]['id']!r} or the one after it" if rows else "its first question"
        raise ConfigError(f"{path}: not SQuAD's layout near {where} ({type(err).__name__}: {err}); expected "
                          "data/paragraphs/qas with id, question and answers [{text, answer_start}]") from None
    return rows


def record_rows_to_hub(rows: list[dict], where: str) -> list[dict]:
    """ReCoRD rows in the hub schema, from either the hub's (one row per query) or SuperGLUE's
    official jsonl (one row per passage: passage {text, entities [{start, end}]} with inclusive
    ends, qas [{query, answers [{start, end, text}], idx}], idx), converted as the hub's loader does
    (entity spans with exclusive ends, answers = the sorted distinct answer texts)."""
    out = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("passage"), dict):
            out.append(row)
            continue
        try:
            text = row["passage"]["text"]
            spans = sorted(({"text": text[e["start"] : e["end"] + 1], "start": e["start"], "end": e["end"] + 1}
                            for e in row["passage"]["entities"]), key=lambda s: s["start"])
            for qa in row["qas"]:
                out.append({"passage": text, "query": qa["query"], "entities": sorted({s["text"] for s in spans}),
                            "entity_spans": spans, "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                            "idx": {"passage": row["idx"], "query": qa["idx"]}})
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{where}: row {number}: not SuperGLUE's ReCoRD layout ({type(err).__name__}: {err})"
                              ) from None
    return out


# -- retrieval ----------------------------------------------------------------------------------
def read_beir_qrels(path: Path) -> list[dict]:
    """BEIR qrels: ``query-id<TAB>corpus-id<TAB>score`` rows under that header line (integer scores)."""
    rows = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and (len(fields) != 3 or not _INTEGER.fullmatch(fields[2].strip())):
            continue  # the header line
        if len(fields) != 3 or not _INTEGER.fullmatch(fields[2].strip()):
            raise ConfigError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>integer score' "
                              f"(BEIR qrels), got {line!r}")
        rows.append({"query-id": fields[0], "corpus-id": fields[1], "score": int(fields[2])})
    return rows


def check_answers(spec, row: dict, where: str) -> None:
    """SQuAD-style answers that are what the metric and the training labels assume: lists of equal
    lengths, each answer the context's text at its ``answer_start``; every question of a task
    without unanswerable questions (SQuAD v1.1, ReCoRD) has one. An answer elsewhere would train
    the question as unanswerable, silently."""
    answers, context = row["answers"], row["context"]
    if (not isinstance(answers, dict) or not isinstance(answers.get("text"), list)
            or len(answers["text"]) != len(answers.get("answer_start") or [])):
        raise ConfigError(f"{where}: answers must be {{'text': [...], 'answer_start': [...]}} of equal lengths, "
                          f"got {answers!r}")
    question = f"question {row.get('id')!r}" if row.get("id") is not None else "the question"
    if not answers["text"] and spec.metric != "squad_v2":
        raise ConfigError(f"{where}: {question} has no answer, but task {spec.name!r} has no unanswerable questions "
                          "(every question needs at least one answer; unanswerable questions are squad_v2's)")
    for text, start in zip(answers["text"], answers["answer_start"]):
        if isinstance(start, bool) or not isinstance(start, int) or not isinstance(text, str):
            raise ConfigError(f"{where}: {question}: answer_start {start!r} and text {text!r} must be an integer "
                              "and a string")
        if not text or not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
            found = context.find(text) if text else -1
            hint = (f" (the text is at {found})" if found >= 0 else " (the text is nowhere in the context)") \
                if text else " (an empty answer text)"
            raise ConfigError(f"{where}: {question}: answer {text!r} is not the context's text at answer_start "
                              f"{start} (context length {len(context)}){hint}")


def check_unique(ids: list[str], what: str, where: str) -> None:
    duplicates = repeats(ids)
    if duplicates:
        raise ConfigError(f"{where}: {len(duplicates)} duplicate {what}(s), e.g. {duplicates[0]!r}; each must be "
                          "unique (results are keyed by it)")
