"""How big each task is, for pricing an evaluation before it runs (``study run --dry-run``).

A :class:`TaskSize` gives a task's examples per split and the mean tokens of one example (framed,
special tokens included), and for retrieval the corpus: its documents and their mean tokens.

- The paper's tasks are *declared* here: row counts from the datasets' cards
  (``shared/spec/datasets.md``), the 95/5 train/validation cut of the tasks that have no
  validation split, and mean lengths. The lengths of SST-2, CoNLL-2003 and UNER-en were measured
  on the genuine files with a WordPiece tokenizer (all-MiniLM-L6-v2's, 2026-12-04); the others are
  estimates (words x 1.3 plus the framing and prefixes), said as such in ``source``.
- The toyworld tasks are *measured*: generated (as a study generates them) and counted, one token
  per whitespace-separated word plus the two framing tokens (the toyworld BPE tokenizer is trained
  on these words; the count is an estimate of its tokens).

Lengths are real tokens: batches padded to their longest member cost more, so a price from these
sizes is a lower bound on that account.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from encoderlab.evaluation.registry import get_task
from encoderlab.evaluation.tasks import load_task

FRAMING = 2  # the start and separator tokens around one framed input


@dataclass(frozen=True)
class TaskSize:
    """Examples per split and mean tokens per example; retrieval: pairs (train), queries
    (validation, test), the query's mean tokens, and the corpus."""

    train: int
    validation: int
    test: int
    tokens: float  # mean tokens of one input (SC text, TC sentence, QA window, IR query)
    source: str
    corpus: int = 0  # retrieval: documents
    doc_tokens: float = 0.0  # retrieval: mean tokens of one document, capped at max_length when priced
    pool: int = 0  # retrieval: documents judged for the validation and test queries (retrieval_ranking: pool)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v or k in ("train", "validation", "test")}


def _train95(rows: int) -> tuple[int, int]:
    train = int(round(0.95 * rows))
    return train, rows - train


MEASURED = "declared: rows from the dataset card; mean tokens measured on the genuine files (WordPiece)"
ESTIMATED = "declared: rows from the dataset card; mean tokens estimated (words x 1.3 + framing)"
PAPER_SIZES: dict[str, TaskSize] = {
    "sst2": TaskSize(*_train95(67_349), 872, tokens=13.3, source=MEASURED),
    "mnli": TaskSize(*_train95(392_702), 9_815, tokens=48.0, source=ESTIMATED),
    "qqp": TaskSize(*_train95(363_846), 40_430, tokens=36.0, source=ESTIMATED),
    "conll2003": TaskSize(14_041, 3_250, 3_453, tokens=20.0, source=MEASURED),
    "ontonotes5": TaskSize(59_924, 8_528, 8_262, tokens=25.0, source=ESTIMATED),
    "uner-en": TaskSize(12_543, 2_001, 2_077, tokens=17.0, source=MEASURED),
    "squad": TaskSize(*_train95(87_599), 10_570, tokens=175.0, source=ESTIMATED),
    "squad_v2": TaskSize(*_train95(130_319), 11_873, tokens=175.0, source=ESTIMATED),
    "record": TaskSize(*_train95(100_730), 10_000, tokens=260.0, source=ESTIMATED),
    # retrieval: train = query-positive pairs of the train qrels (BEIR's train.tsv; the protocol's 1,000 steps
    # x 32 use 32,000 of them); validation = MS MARCO dev, test = TREC-DL19; MLDR's documents are cut at
    # max_length when priced
    # pools: at most one document per evaluation qrel (dev 7,437 + DL19 9,260; NQ 4,201; MLDR one per query)
    "msmarco": TaskSize(532_751, 6_980, 43, tokens=12.0, corpus=8_841_823, doc_tokens=80.0, pool=16_697,
                        source=ESTIMATED),
    "nq": TaskSize(0, 0, 3_452, tokens=14.0, corpus=2_681_468, doc_tokens=110.0, pool=4_201, source=ESTIMATED),
    "mldr-en": TaskSize(0, 200, 800, tokens=15.0, corpus=200_000, doc_tokens=3_308.0, pool=1_000,
                        source=ESTIMATED.replace("words x 1.3 + framing", "MLDR's published mean document length, "
                                                 "3,308 tokens")),
}


def _words(text: str) -> int:
    return len(text.split())


@functools.cache
def _toyworld_size(name: str) -> TaskSize:
    task = load_task(name)  # generated as a study generates it
    source = "measured: the generated task, one token per word + framing"
    if task.corpus is not None:
        def queries(split):
            return [q for q in task.queries.get(split, []) if q["_id"] in task.qrels.get(split, {})]

        pairs = sum(1 for rel in task.qrels.get("train", {}).values() for score in rel.values() if score > 0)
        evaluated = queries("validation") + queries("test")
        pool = {d for name, table in task.qrels.items() if name != "train" for rel in table.values() for d in rel}
        return TaskSize(pairs, len(queries("validation")), len(queries("test")),
                        tokens=FRAMING + sum(_words(q["text"]) for q in evaluated) / max(1, len(evaluated)),
                        corpus=len(task.corpus), pool=len(pool), source=source,
                        doc_tokens=FRAMING + sum(_words(f"{d.get('title', '')} {d['text']}") for d in task.corpus)
                        / max(1, len(task.corpus)))
    rows = [r for split in task.splits.values() for r in split]

    def length(row: dict) -> int:
        if "tokens" in row:
            return len(row["tokens"])
        return sum(_words(str(row[k])) for k in ("sentence", "premise", "hypothesis", "question", "context") if k in row)

    return TaskSize(*(len(task.splits.get(s, [])) for s in ("train", "validation", "test")),
                    tokens=FRAMING + sum(map(length, rows)) / max(1, len(rows)), source=source)


def task_size(name: str) -> TaskSize:
    """The size of task ``name``: declared for the paper's tasks, measured for the toyworld ones."""
    spec = get_task(name)
    if spec.toyworld:
        return _toyworld_size(name)
    if name in PAPER_SIZES:
        return PAPER_SIZES[name]
    base = {"mnli-mismatched": "mnli"}.get(name)
    if base is not None:
        size = PAPER_SIZES[base]
        return TaskSize(size.train, size.validation, 9_832, tokens=size.tokens, source=size.source)
    raise KeyError(f"no declared size for task {name!r}")
