"""Our QA and IR metrics against independent, packaged implementations, on generated data.

SQuAD: the ports of the official ``evaluate-v1.1.py`` / ``evaluate-v2.0.py`` shipped in
``tf-models-official`` (``official.nlp.tools.squad_evaluate_v1_1`` / ``_v2_0``, which need only
``absl-py``; install with ``pip install --no-deps tf-models-official absl-py``), and ``torchmetrics``'
SQuAD metric. Retrieval: ``pytrec_eval`` (trec_eval) directly. Each test skips when its reference
is not installed.
"""

import math
import random
from contextlib import contextmanager

import pytest

from encoderlab.evaluation.metrics import (
    normalize_answer,
    record_scores,
    retrieval_per_query,
    retrieval_scores,
    squad_scores,
)
from testkit import pytrec_per_query, trec_order

TOL = 1e-6

# -- generated extractive QA data -----------------------------------------------------------------

_WORDS = (
    "the a an The An A history of Roman empire ended in 476 after decades crisis Saint-Lô théâtre "
    "naïve café 1,200 $5.3 million U.S. Dr. Smith's \u201cgreat\u201d war\u2014and peace \u00abla\u00bb "
    "interventionism tower Eiffel Paris Paris paris 20% co-operation e.g. another then them"
).split()
_PUNCT_ONLY = [".", "...", "!?", "--", "'", '"', "()", " . , ", "\u2014", "\u201c\u201d", "\u00bf"]
_EMPTY_ISH = ["", " ", "\t\n", "the", "A", "an the", "a.", "The!"]


def _passage(rng):
    words = [rng.choice(_WORDS) for _ in range(rng.randint(12, 40))]
    seps = [rng.choice([" ", " ", " ", "  ", "\t", "\n", ", ", "; ", " - "]) for _ in words]
    return words, seps


def _span(rng, words, seps):
    i = rng.randrange(len(words))
    j = min(len(words), i + rng.randint(1, 6))
    out = "".join(w + s for w, s in zip(words[i:j], seps[i:j]))
    return out if rng.random() < 0.5 else out.strip()


def _perturb(rng, text, words, seps):
    kind = rng.randrange(10)
    if kind == 0:
        return text
    if kind == 1:
        return text.upper() if rng.random() < 0.5 else text.lower()
    if kind == 2:
        return rng.choice(["the ", "a ", "An ", ""]) + text + rng.choice(["", ".", "!", " \u2014", "\u201d"])
    if kind == 3:  # repeated tokens
        toks = text.split() or ["the"]
        return " ".join(toks + rng.sample(toks, k=min(len(toks), 2)))
    if kind == 4:
        return rng.choice(_PUNCT_ONLY)
    if kind == 5:
        return rng.choice(_EMPTY_ISH)
    return _span(rng, words, seps)  # another span, often overlapping the gold one


def _qa_set(seed, n, allow_unanswerable):
    rng = random.Random(seed)
    predictions, references = {}, {}
    for k in range(n):
        words, seps = _passage(rng)
        golds = [_span(rng, words, seps) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            golds.append(rng.choice(_PUNCT_ONLY + _EMPTY_ISH))
        if rng.random() < 0.2:
            golds.append(rng.choice(golds))  # duplicate answer
        if rng.random() < 0.1:
            golds = [rng.choice(_PUNCT_ONLY + _EMPTY_ISH) for _ in range(rng.randint(1, 3))]
        if allow_unanswerable and rng.random() < 0.2:
            golds = []
        rng.shuffle(golds)
        basis = rng.choice(golds) if golds else _span(rng, words, seps)
        qid = f"q{k:04d}"
        predictions[qid] = _perturb(rng, basis, words, seps)
        references[qid] = golds
    return predictions, references


def _dataset(references):
    """SQuAD JSON layout, as the official scripts read it."""
    qas = [{"id": q, "answers": [{"text": g, "answer_start": 0} for g in golds]} for q, golds in references.items()]
    return [{"paragraphs": [{"qas": qas}]}]


def _coverage(predictions, references):
    """How many questions exercise each edge, so the comparison is known not to be vacuous."""
    empty = {q for q, p in predictions.items() if not normalize_answer(p)}
    return {
        "empty prediction": len(empty),
        "gold normalising to empty": sum(any(not normalize_answer(g) for g in gs) for gs in references.values()),
        "only golds normalising to empty": sum(bool(gs) and all(not normalize_answer(g) for g in gs)
                                               for gs in references.values()),
        "unanswerable": sum(not gs for gs in references.values()),
        "several golds": sum(len(gs) > 1 for gs in references.values()),
        "duplicate golds": sum(len(set(gs)) < len(gs) for gs in references.values()),
        "unicode punctuation": sum(any(ch in p for ch in "\u2014\u201c\u201d\u00ab\u00bb\u00bf")
                                   for p in predictions.values()),
    }


def test_generated_qa_data_covers_the_edges():
    for allow in (False, True):
        cover = _coverage(*_qa_set(7, 800, allow))
        assert all(v >= 15 for k, v in cover.items() if k != "unanswerable" or allow), cover
    predictions, references = _qa_set(7, 800, False)
    partial = [squad_scores({q: predictions[q]}, {q: references[q]}, version=1)["f1"] for q in references]
    assert sum(0 < f < 100 for f in partial) >= 100  # many partial overlaps, not just 0 / 100


def test_squad_v1_matches_the_official_v11_script():
    v11 = pytest.importorskip("official.nlp.tools.squad_evaluate_v1_1")
    predictions, references = _qa_set(11, 800, allow_unanswerable=False)
    ours = squad_scores(predictions, references, version=1)
    theirs = v11.evaluate(_dataset(references), predictions)
    assert abs(ours["exact"] - 100 * theirs["exact_match"]) < TOL
    assert abs(ours["f1"] - 100 * theirs["final_f1"]) < TOL
    for q, golds in references.items():
        f1 = v11._metric_max_over_ground_truths(v11._f1_score, predictions[q], golds)
        em = v11._metric_max_over_ground_truths(v11._exact_match_score, predictions[q], golds)
        assert abs(ours["per_question_f1"][q] - f1) < TOL, (predictions[q], golds)
        single = squad_scores({q: predictions[q]}, {q: golds}, version=1)
        assert single["exact"] == 100.0 * em, (predictions[q], golds)
    # ReCoRD's official script has the v1.1 rules
    assert record_scores(predictions, references) == ours


def test_squad_v2_matches_the_official_v20_script():
    v20 = pytest.importorskip("official.nlp.tools.squad_evaluate_v2_0")
    predictions, references = _qa_set(13, 800, allow_unanswerable=True)
    ours = squad_scores(predictions, references, version=2)
    theirs = v20.evaluate(_dataset(references), predictions)
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
        assert abs(ours[key] - theirs[key]) < TOL, key
    for key in ("total", "HasAns_total", "NoAns_total"):
        assert ours[key] == theirs[key], key
    exact_raw, f1_raw = v20._get_raw_scores(_dataset(references), predictions)
    for q in references:
        assert abs(ours["per_question_f1"][q] - f1_raw[q]) < TOL, (predictions[q], references[q])
        single = squad_scores({q: predictions[q]}, {q: references[q]}, version=2)
        assert single["exact"] == 100.0 * exact_raw[q], (predictions[q], references[q])


@contextmanager
def _float64(torch):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torchmetrics accumulates in the default dtype
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _torchmetrics_squad(squad, predictions, references):
    preds = [{"id": q, "prediction_text": p} for q, p in predictions.items()]
    target = [{"id": q, "answers": {"text": list(golds), "answer_start": [0] * len(golds)}}
              for q, golds in references.items()]
    out = squad(preds, target)
    return float(out["exact_match"]), float(out["f1"])


def test_squad_against_torchmetrics():
    """torchmetrics' SQuAD metric keeps every gold answer as v1.1 does, but scores F1 with v2.0's
    empty-answer rule. So it must equal our v1.1 EM everywhere and our v1.1 F1 wherever no pair is
    empty against empty, and our v2.0 scores on answerable questions with no gold normalising to ""."""
    torch = pytest.importorskip("torch")
    squad = pytest.importorskip("torchmetrics.functional.text.squad").squad
    predictions, references = _qa_set(17, 600, allow_unanswerable=False)
    ours = squad_scores(predictions, references, version=1)
    with _float64(torch):
        tm_exact, tm_f1 = _torchmetrics_squad(squad, predictions, references)
        assert abs(ours["exact"] - tm_exact) < TOL
        both_empty = {q for q, golds in references.items()
                      if not normalize_answer(predictions[q]) and any(not normalize_answer(g) for g in golds)}
        assert len(both_empty) >= 10
        rest = {q: references[q] for q in references if q not in both_empty}
        ours_rest = squad_scores(predictions, rest, version=1)
        assert abs(ours_rest["f1"] - _torchmetrics_squad(squad, predictions, rest)[1]) < TOL
        # on the empty-vs-empty questions v1.1 gives F1 0 and torchmetrics 1
        for q in sorted(both_empty)[:20]:
            assert ours["per_question_f1"][q] == 0.0
            assert _torchmetrics_squad(squad, predictions, {q: references[q]})[1] == 100.0
        # v2.0 == torchmetrics where no gold is dropped and the question is answerable
        kept = {q: gs for q, gs in references.items() if all(normalize_answer(g) for g in gs)}
        assert len(kept) >= 300
        v2 = squad_scores(predictions, kept, version=2)
        tm_exact, tm_f1 = _torchmetrics_squad(squad, predictions, kept)
        assert abs(v2["exact"] - tm_exact) < TOL and abs(v2["f1"] - tm_f1) < TOL


# -- retrieval ------------------------------------------------------------------------------------


def _retrieval_set(seed, n_queries=60, n_docs=150):
    """Runs with many tied scores (few distinct values) and TREC-DL style graded qrels (0/1/2)."""
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(n_docs)]
    run, qrels = {}, {}
    for k in range(n_queries):
        q = f"q{k:02d}"
        retrieved = rng.sample(docs, rng.randint(0 if k % 17 == 5 else 5, 130))
        levels = [round(rng.uniform(0, 1), 1) for _ in range(rng.randint(1, 6))]
        run[q] = {d: rng.choice(levels) for d in retrieved}
        judged = rng.sample(docs, rng.randint(1, 25))
        qrels[q] = {d: rng.choice([0, 0, 1, 1, 2]) for d in judged}
        if k % 13 == 3:  # judged, nothing relevant
            qrels[q] = {d: 0 for d in judged}
        if k % 7 == 2 and retrieved:  # relevant documents tied with others near the top
            best = max(run[q].values())
            for d in judged[:3]:
                run[q][d] = best
    return run, qrels


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_retrieval_matches_pytrec_eval_on_tied_graded_runs(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = _retrieval_set(seed)
    pool = {d for rels in qrels.values() for d in rels} | {f"d{i:03d}" for i in range(0, 150, 9)}
    for judged_pool in (None, pool):
        used = run if judged_pool is None else {q: {d: s for d, s in ds.items() if d in judged_pool}
                                                 for q, ds in run.items()}
        reference = pytrec_per_query(pytrec_eval, used, qrels)
        ours = retrieval_scores(run, qrels, judged_pool=judged_pool)
        suffix = "" if judged_pool is None else " (judged pool)"
        for name, per_query_ref in reference.items():
            per_query = retrieval_per_query(run, qrels, judged_pool=judged_pool, measure=name)
            assert per_query.keys() == qrels.keys()
            for q in qrels:
                assert abs(per_query[q] - per_query_ref[q]) < TOL, (name, q)
            assert abs(ours[name + suffix] - sum(per_query_ref.values()) / len(qrels)) < TOL, name
            assert abs(ours[name + suffix] - sum(per_query.values()) / len(qrels)) < TOL, name


def test_retrieval_ties_matter_in_the_generated_runs():
    """The generated runs' ties change the scores: ranked with ids ascending (encoderlab's rule before
    2026-12-04) NDCG@10 differs on many queries, so the comparison above really pins the tie rule
    down; with trec_eval's rule (ids descending, written out here) it is pytrec_eval's raw number."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = _retrieval_set(1)
    raw = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate({q: s for q, s in run.items() if s})
    ascending = {q: sorted(s.items(), key=lambda kv: (-kv[1], kv[0])) for q, s in run.items() if s}
    ascending_free = {q: {d: float(len(o) - i) for i, (d, _) in enumerate(o)} for q, o in ascending.items()}
    other = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(ascending_free)
    differing = [q for q in raw if not math.isclose(raw[q]["ndcg_cut_10"], other[q]["ndcg_cut_10"], abs_tol=TOL)]
    assert len(differing) >= 5
    ours = retrieval_per_query(run, qrels, measure="ndcg@10")
    assert all(abs(ours[q] - raw[q]["ndcg_cut_10"]) < TOL for q in raw)
    trec = {q: {d: float(len(s) - i) for i, d in enumerate(trec_order(s))} for q, s in run.items() if s}
    again = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(trec)
    assert all(abs(again[q]["ndcg_cut_10"] - raw[q]["ndcg_cut_10"]) < TOL for q in raw)