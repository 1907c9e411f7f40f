"""Task metrics, through the field's standard implementations.

- SC: accuracy.
- TC: entity-level F1 with ``seqeval`` (strict IOB2), the standard CoNLL measure; and, labelled
  ``token_micro_f1_incl_o (paper)``, the token-level micro F1 over all tokens including ``O``
  that the authors' evaluation code reports (equal to token accuracy).
- QA: the official SQuAD v1.1 / v2.0 exact match and F1 (answer normalisation, max over reference
  answers, no-answer handling of v2), and ReCoRD's max-over-answers EM / F1. The official scripts
  are not packaged (``evaluate`` downloads them from the hub), so their logic is reproduced here
  and tested against cases worked through with it.
- IR: NDCG@10, MRR@10 and Recall@100 with ``ir_measures`` (trec_eval underneath), over the full
  corpus (standard) and, labelled ``(judged pool)``, over the judged documents only as the paper did.
"""

from __future__ import annotations

import collections
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


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, articles and extra whitespace (official SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = _tokens(prediction), _tokens(gold)
    if not pred or not ref:  # v2: no-answer vs no-answer is a match, anything else against empty is 0
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]], version: int = 2) -> dict:
    """EM and F1 (x100) over questions: max over reference answers; an empty reference list is
    unanswerable (v2: only the empty prediction scores). Per-question scores are returned too."""
    missing = sorted(set(references) - set(predictions))
    if missing:
        raise ValueError(f"squad_scores: no prediction for {len(missing)} questions (e.g. {missing[0]!r})")
    per_question = {}
    for qid, golds in references.items():
        if not golds and version == 1:
            raise ValueError(f"squad_scores: question {qid!r} has no answer, which SQuAD v1.1 does not allow")
        golds = [g for g in golds if normalize_answer(g)] or [""]
        prediction = predictions[qid]
        per_question[qid] = (max(exact_match(prediction, g) for g in golds),
                             max(token_f1(prediction, g) for g in golds))
    has_answer = [q for q, golds in references.items() if golds]
    no_answer = [q for q, golds in references.items() if not golds]

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
    """ReCoRD: max over the gold entity strings of EM and token F1 (x100), like the official script."""
    return squad_scores(predictions, references, version=1)


# -- retrieval -----------------------------------------------------------------------------------


def retrieval_scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                     judged_pool: set[str] | None = None) -> dict[str, float]:
    """NDCG@10, MRR@10 and Recall@100 over the queries of ``qrels`` (ir_measures / trec_eval).

    ``run`` maps each query to document scores over the whole corpus. With ``judged_pool`` the
    run is first restricted to those documents, reproducing the authors' "(judged pool)" variant.
    """
    import ir_measures
    from ir_measures import R, RR, nDCG

    if judged_pool is not None:
        run = {q: {d: s for d, s in docs.items() if d in judged_pool} for q, docs in run.items()}
    missing = sorted(set(qrels) - set(run))
    if missing:
        raise ValueError(f"retrieval_scores: no ranking for {len(missing)} judged queries (e.g. {missing[0]!r})")
    measures = {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "recall@100": R @ 100}
    values = ir_measures.calc_aggregate(list(measures.values()), qrels, {q: run[q] for q in qrels})
    suffix = " (judged pool)" if judged_pool is not None else ""
    return {name + suffix: float(values[measure]) for name, measure in measures.items()}
