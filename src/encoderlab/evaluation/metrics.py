"""Task metrics, through the field's standard implementations.

- SC: accuracy.
- TC: entity-level F1 with ``seqeval`` (strict IOB2), the standard CoNLL measure; and, labelled
  ``token_micro_f1_incl_o (paper)``, the token-level micro F1 over all tokens including ``O``
  that the authors' evaluation code reports (equal to token accuracy).
- QA: the official SQuAD v1.1 / v2.0 exact match and F1, and ReCoRD's max-over-answers EM / F1.
  The official scripts are not packaged (``evaluate`` downloads them from the hub), so their logic
  is reproduced here; the tests compare it with packaged ports of both scripts and with
  ``torchmetrics``. Both versions share the answer normalisation (lower-case; drop the ASCII
  characters of ``string.punctuation`` only, so unicode punctuation such as ``—`` or ``“`` stays
  part of a token; drop the words a / an / the; collapse whitespace) and take the max over the
  reference answers. They differ on empty answers, and each version follows its own script:

  * v1.1 (``evaluate-v1.1.py``): every reference answer counts, even one that normalises to "";
    EM compares the normalised strings (so "" matches ""), token F1 is 0 whenever no token is
    shared (so an empty prediction against an empty answer has EM 1 but F1 0). A question must
    have at least one reference answer.
  * v2.0 (``evaluate-v2.0.py``): reference answers that normalise to "" are dropped and, if none
    is left, the only reference is ""; token F1 is 1 when both sides are empty and 0 when only one
    is. A question counts as answerable (``HasAns``) when its reference list is not empty, as in
    the script, even if every answer in it normalises to "".

  ReCoRD's official script (SuperGLUE ``record_evaluation.py``) uses the v1.1 rules.
- IR: NDCG@10, MRR@10 and Recall@100 with ``ir_measures`` (``pytrec_eval`` / trec_eval for NDCG and
  recall, its MS MARCO provider for MRR@10), over the full corpus (standard) and, labelled
  ``(judged pool)``, over the judged documents only as the paper did.

  Tie rule: trec_eval's. Every query's documents are ranked once, by score descending and, among
  equal scores, by document id descending (trec_eval compares ids with strcmp; Python's string order
  is the same order on UTF-8). Every measure is then computed from that one ranking: the providers
  are handed scores that strictly decrease along it, so none of them applies its own tie rule, and
  NDCG@10, MRR@10 and Recall@100 equal pytrec_eval's (what BEIR and MTEB report) on every run, tied
  or not (MRR@10: pytrec_eval's ``recip_rank`` on the run cut to its top 10). Ties are not only a
  toy-data matter: two documents with the same text get the same score under any model. (Handing
  ir_measures' MS MARCO provider and pytrec_eval the raw run is how MRR@10 and NDCG@10 once came to
  rank the same tied run two ways; before 2026-12-04 encoderlab broke ties by id ascending.) Relevance grades follow trec_eval: NDCG's gain is the grade itself
  (0, 1, 2, ... as in TREC DL), MRR and recall count a document relevant when its grade is >= 1.
  Means are over the queries of ``qrels``; a judged query that retrieved nothing scores 0.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Sequence

# -- sequence classification -------------------------------------------------------------------


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"accuracy: {len(predictions)} predictions for {len(labels)} labels")
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


# -- token classification ----------------------------------------------------------------------


def entity_scores(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, float]:
    """seqeval strict IOB2 entity precision / recall / F1, and the paper's token-level micro F1."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags)):
        raise ValueError("entity_scores: predicted tag sequences must align with the gold ones")
    options = dict(mode="strict", scheme=IOB2, zero_division=0)
    tokens = sum(len(t) for t in true_tags)
    correct = sum(int(a == b) for t, p in zip(true_tags, pred_tags) for a, b in zip(t, p))
    return {
        "entity_f1": f1_score(true_tags, pred_tags, **options),
        "entity_precision": precision_score(true_tags, pred_tags, **options),
        "entity_recall": recall_score(true_tags, pred_tags, **options),
        # micro-averaged F1 over every token's label, O included: equals token accuracy
        "token_micro_f1_incl_o (paper)": correct / tokens if tokens else 0.0,
    }


# -- extractive QA (official SQuAD logic) ---------------------------------------------------------


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, articles and extra whitespace (official SQuAD normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> int:
    """1 when the normalised strings are equal (the same in SQuAD v1.1 and v2.0), else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, version: int = 2) -> float:
    """Token-overlap F1 of the normalised answers, by the rule of SQuAD ``version`` (1 or 2).

    v2: an empty side scores 1 against an empty side, 0 against anything else. v1.1: 0 whenever
    no token is shared, so empty against empty is 0 too.
    """
    if version not in (1, 2):
        raise ValueError(f"token_f1: SQuAD version must be 1 or 2, not {version!r}")
    pred, ref = _tokens(prediction), _tokens(gold)
    if version == 2 and (not pred or not ref):
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]], version: int = 2) -> dict:
    """EM and F1 (x100) over the questions of ``references``, by the official script of SQuAD
    ``version`` (1: v1.1, 2: v2.0; see the module docstring for how they differ).

    Each question scores the max over its reference answers. v2: an empty reference list is
    unanswerable and only a prediction that normalises to "" scores; ``HasAns_*`` / ``NoAns_*``
    are over questions with a non-empty / empty reference list (``None`` where there are none;
    the official script leaves those keys out). v1: every question needs a reference answer.
    ``per_question_f1`` holds each question's F1 in [0, 1].
    """
    if version not in (1, 2):
        raise ValueError(f"squad_scores: SQuAD version must be 1 or 2, not {version!r}")
    missing = sorted(set(references) - set(predictions))
    if missing:
        raise ValueError(f"squad_scores: no prediction for {len(missing)} questions (e.g. {missing[0]!r})")
    per_question = {}
    for qid, answers in references.items():
        if isinstance(answers, str):
            raise TypeError(f"squad_scores: the references of {qid!r} must be a list of answers, not a string")
        answers = list(answers)
        if version == 1:
            if not answers:
                raise ValueError(f"squad_scores: question {qid!r} has no answer, which SQuAD v1.1 does not allow")
            golds = answers  # v1.1 keeps every answer, even one that normalises to ""
        else:
            golds = [g for g in answers if normalize_answer(g)] or [""]
        prediction = predictions[qid]
        per_question[qid] = (max(exact_match(prediction, g) for g in golds),
                             max(token_f1(prediction, g, version=version) for g in golds))
    has_answer = [q for q, answers in references.items() if answers]
    no_answer = [q for q, answers in references.items() if not answers]

    def mean(ids, k):
        return 100.0 * sum(per_question[q][k] for q in ids) / len(ids) if ids else None

    everyone = list(references)
    result = {"exact": mean(everyone, 0), "f1": mean(everyone, 1), "total": len(everyone),
              "per_question_f1": {q: per_question[q][1] for q in everyone}}
    if version == 2:
        result.update(HasAns_exact=mean(has_answer, 0), HasAns_f1=mean(has_answer, 1), HasAns_total=len(has_answer),
                      NoAns_exact=mean(no_answer, 0), NoAns_f1=mean(no_answer, 1), NoAns_total=len(no_answer))
    return result


def record_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict:
    """ReCoRD: max over the gold entity strings of EM and token F1 (x100).

    The official ReCoRD script (SuperGLUE ``record_evaluation.py``) takes its normalisation, EM,
    F1 and max over answers from SQuAD v1.1, so this is ``squad_scores(..., version=1)``: every
    gold string counts and F1 is 0 when no token is shared.
    """
    return squad_scores(predictions, references, version=1)


# -- retrieval -----------------------------------------------------------------------------------


RETRIEVAL_MEASURES = ("ndcg@10", "mrr@10", "recall@100")


def rank_documents(scores: dict[str, float]) -> list[str]:
    """One query's document ids in rank order: score descending, ties by document id descending
    (trec_eval's order)."""
    for doc, score in scores.items():
        if math.isnan(score):
            raise ValueError(f"rank_documents: document {doc!r} has a NaN score")
    return sorted(scores, key=lambda doc: (scores[doc], doc), reverse=True)


def _ranked_run(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], judged_pool: set[str] | None,
                caller: str) -> dict[str, dict[str, float]]:
    """The run over the queries of ``qrels``, re-scored so that scores strictly decrease in our rank order."""
    if judged_pool is not None:
        run = {q: {d: s for d, s in docs.items() if d in judged_pool} for q, docs in run.items()}
    missing = sorted(set(qrels) - set(run))
    if missing:
        raise ValueError(f"{caller}: no ranking for {len(missing)} judged queries (e.g. {missing[0]!r})")
    ranked = {}
    for q in qrels:
        order = rank_documents(run[q])
        if order:  # a query with nothing retrieved is left out and scores 0 below
            ranked[q] = {d: float(len(order) - i) for i, d in enumerate(order)}
    return ranked


def _per_query(run, qrels, judged_pool, names, caller) -> dict[str, dict[str, float]]:
    import ir_measures
    from ir_measures import R, RR, nDCG

    if not qrels:
        raise ValueError(f"{caller}: no judged queries")
    unknown = [n for n in names if n not in RETRIEVAL_MEASURES]
    if unknown:
        raise ValueError(f"{caller}: unknown measure {unknown[0]!r}, expected one of {RETRIEVAL_MEASURES}")
    known = {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "recall@100": R @ 100}
    measures = {str(known[n]): n for n in names}
    ranked = _ranked_run(run, qrels, judged_pool, caller)
    values = {n: {q: 0.0 for q in qrels} for n in names}
    if ranked:
        for metric in ir_measures.iter_calc([known[n] for n in names], qrels, ranked):
            if metric.query_id in qrels:
                values[measures[str(metric.measure)]][metric.query_id] = float(metric.value)
    return values


def retrieval_scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                     judged_pool: set[str] | None = None) -> dict[str, float]:
    """NDCG@10, MRR@10 and Recall@100, means over the queries of ``qrels`` (ir_measures / trec_eval).

    ``run`` maps each query to document scores over the whole corpus. With ``judged_pool`` the
    run is first restricted to those documents, reproducing the authors' "(judged pool)" variant.
    All three measures come from one ranking per query, with the tie rule of the module docstring
    (score descending, then document id descending, as trec_eval); a judged query with no documents
    scores 0.
    """
    per_query = _per_query(run, qrels, judged_pool, RETRIEVAL_MEASURES, "retrieval_scores")
    suffix = " (judged pool)" if judged_pool is not None else ""
    return {name + suffix: sum(per_query[name].values()) / len(qrels) for name in RETRIEVAL_MEASURES}


def retrieval_per_query(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                        judged_pool: set[str] | None = None, measure: str = "ndcg@10") -> dict[str, float]:
    """Per-query values of one of ``RETRIEVAL_MEASURES`` ("ndcg@10", "mrr@10", "recall@100"), for
    every query of ``qrels``, from the same ranking as ``retrieval_scores`` (their mean is its score).

    A judged query missing from ``run`` is an error; one with no retrieved documents scores 0.
    """
    return _per_query(run, qrels, judged_pool, (measure,), "retrieval_per_query")[measure]
