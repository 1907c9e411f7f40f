import math

import pytest

from encoderlab.evaluation.metrics import (
    accuracy,
    entity_scores,
    normalize_answer,
    exact_match,
    record_scores,
    retrieval_per_query,
    retrieval_scores,
    squad_scores,
    token_f1,
)


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        accuracy([1, 0, 1], [1, 1])


def test_entity_f1_is_strict_iob2_and_differs_from_the_paper_token_variant():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "I-ORG", "I-ORG", "O", "O"]]  # missed LOC; ORG without B-
    scores = entity_scores(gold, pred)
    # strict IOB2: the predicted ORG starting with I- is invalid, so 1 correct entity of 1 predicted, 3 gold
    assert scores["entity_precision"] == 1.0 and scores["entity_recall"] == pytest.approx(1 / 3)
    assert scores["entity_f1"] == pytest.approx(0.5)
    # the paper's variant counts every token, O included: 7 of 9 tokens right
    assert scores["token_micro_f1_incl_o (paper)"] == pytest.approx(7 / 9)
    with pytest.raises(ValueError, match="align"):
        entity_scores(gold, [["O"]])


def test_squad_v2_official_logic():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    references = {
        "q1": ["Eiffel Tower", "the Eiffel Tower"],  # answerable, two references
        "q2": [],  # unanswerable
        "q3": [],  # unanswerable, but the model answers
        "q4": ["in 1998"],
    }
    predictions = {"q1": "eiffel tower.", "q2": "", "q3": "Paris", "q4": "1998 summer"}
    scores = squad_scores(predictions, references, version=2)
    # q4: tokens {1998, summer} vs {in, 1998}: precision 1/2, recall 1/2 -> F1 0.5, EM 0
    assert scores["exact"] == pytest.approx(100 * 2 / 4) and scores["f1"] == pytest.approx(100 * 2.5 / 4)
    assert scores["HasAns_exact"] == 50.0 and scores["HasAns_f1"] == 75.0 and scores["HasAns_total"] == 2
    assert scores["NoAns_exact"] == 50.0 and scores["NoAns_total"] == 2
    assert scores["per_question_f1"] == {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.5}
    with pytest.raises(ValueError, match="no prediction for 1 questions"):
        squad_scores({"q1": "x"}, {"q1": ["x"], "q2": ["y"]})


def test_squad_v1_keeps_answers_that_normalise_to_empty():
    # the v2.0 rule of dropping such answers used to be applied to v1.1 as well: EM was 0 here
    assert squad_scores({"q": "."}, {"q": ["interventionism", "."]}, version=1)["exact"] == 100.0
    # v1.1 F1 is 0 when no token is shared, even empty against empty
    v1 = squad_scores({"q": "."}, {"q": ["interventionism", "."]}, version=1)
    assert v1["f1"] == 0.0 and v1["per_question_f1"] == {"q": 0.0} and "HasAns_exact" not in v1
    # v2.0 drops "." and scores "." (normalised "") against "interventionism" only
    v2 = squad_scores({"q": "."}, {"q": ["interventionism", "."]}, version=2)
    assert v2["exact"] == 0.0 and v2["f1"] == 0.0 and v2["HasAns_total"] == 1
    # every gold normalises to "": v1.1 keeps them (EM 1, F1 0), v2.0 leaves [""] (EM 1, F1 1), still HasAns
    assert squad_scores({"q": ""}, {"q": ["", "the"]}, version=1) == {
        "exact": 100.0, "f1": 0.0, "total": 1, "per_question_f1": {"q": 0.0}}
    v2 = squad_scores({"q": "a"}, {"q": ["...", ""]}, version=2)
    assert (v2["exact"], v2["f1"], v2["HasAns_total"], v2["NoAns_total"]) == (100.0, 100.0, 1, 0)
    assert v2["NoAns_exact"] is None and v2["NoAns_f1"] is None
    # a real answer beside the empty one: v1.1 takes the max over both, v2.0 only sees the real one
    assert squad_scores({"q": "Paris"}, {"q": ["", "paris"]}, version=1)["exact"] == 100.0
    assert squad_scores({"q": ""}, {"q": ["", "paris"]}, version=1)["exact"] == 100.0
    assert squad_scores({"q": ""}, {"q": ["", "paris"]}, version=2)["exact"] == 0.0
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        squad_scores({"q": "x"}, {"q": ["x"]}, version=3)
    with pytest.raises(TypeError, match="list of answers"):
        squad_scores({"q": "x"}, {"q": "x"})


def test_squad_normalisation_edges():
    # only ASCII punctuation is removed: unicode dashes and quotes stay inside the token
    assert normalize_answer("\u201cParis\u201d\u2014") == "\u201cparis\u201d\u2014"
    assert exact_match("\u201cParis\u201d", "Paris") == 0 and token_f1("Paris\u2014", "Paris", version=1) == 0.0
    assert exact_match("Paris!?", "paris") == 1
    # articles are whole words only, and punctuation goes first ("the-end" -> "theend")
    assert normalize_answer("An apple, the theatre; a-b the-end") == "apple theatre ab theend"
    assert normalize_answer(" Eiffel\tTower\n ") == "eiffel tower"
    # repeated tokens count with multiplicity: {cat, cat} vs {cat}: precision 1/2, recall 1
    assert token_f1("the cat cat", "cat", version=1) == pytest.approx(2 / 3)
    assert token_f1("cat", "cat cat dog", version=2) == pytest.approx(2 * (1 * 1 / 3) / (1 + 1 / 3))
    # empty sides: v2 1 only for empty vs empty, v1.1 always 0
    assert token_f1("", "the", version=2) == 1.0 and token_f1("", "the", version=1) == 0.0
    assert token_f1("", "x", version=2) == 0.0 and token_f1("x", "", version=2) == 0.0


def test_record_takes_the_best_of_the_gold_entities():
    scores = record_scores({"a": "Barack Obama", "b": "US"}, {"a": ["Obama", "Barack Obama"], "b": ["United States"]})
    assert scores["exact"] == 50.0 and scores["f1"] == 50.0
    with pytest.raises(ValueError, match="SQuAD v1.1 does not allow"):
        record_scores({"a": ""}, {"a": []})
    # v1.1 rules (as the official ReCoRD script): an entity string normalising to "" still counts
    assert record_scores({"a": "The"}, {"a": ["Obama", "the"]})["exact"] == 100.0


def test_retrieval_scores_match_hand_computed_values():
    qrels = {"q1": {"d1": 1}, "q2": {"d5": 1, "d6": 1}}
    run = {
        "q1": {"d3": 0.9, "d1": 0.8, "d2": 0.1},  # relevant at rank 2
        "q2": {"d5": 0.9, "d7": 0.8, "d8": 0.7, "d6": 0.6},  # relevant at ranks 1 and 4
    }
    scores = retrieval_scores(run, qrels)
    ndcg_q1 = 1 / math.log2(3)
    ndcg_q2 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert scores["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert scores["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["recall@100"] == pytest.approx(1.0)
    # the paper's variant ranks only judged documents: unjudged d3, d7, d8 drop out, scores rise
    pooled = retrieval_scores(run, qrels, judged_pool={"d1", "d5", "d6", "d2"})
    assert pooled["ndcg@10 (judged pool)"] > scores["ndcg@10"] and pooled["mrr@10 (judged pool)"] == 1.0
    with pytest.raises(ValueError, match="no ranking for 1 judged queries"):
        retrieval_scores({"q1": run["q1"]}, qrels)


def test_retrieval_ties_are_broken_once_by_document_id_for_every_measure():
    # 'a' and 'b' tie: ranked by id descending as trec_eval ranks them, 'b' is first for all three measures
    run = {"q": {"a": 1.0, "b": 1.0}}
    assert retrieval_scores(run, {"q": {"b": 1}}) == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}
    # with 'a' relevant, it is second for every measure (MRR used to say 1.0 while NDCG said 0.63)
    scores = retrieval_scores(run, {"q": {"a": 1}})
    assert scores["mrr@10"] == pytest.approx(0.5) and scores["ndcg@10"] == pytest.approx(1 / math.log2(3))
    for name, value in scores.items():
        assert retrieval_per_query(run, {"q": {"a": 1}}, measure=name) == {"q": pytest.approx(value)}
    pooled = retrieval_scores({"q": {"a": 2.0, "b": 1.0, "c": 2.0}}, {"q": {"a": 1}}, judged_pool={"a", "b"})
    assert pooled["mrr@10 (judged pool)"] == 1.0  # 'c' is outside the pool: 'a' is first
    assert retrieval_per_query({"q": {"a": 2.0, "b": 1.0, "c": 2.0}}, {"q": {"a": 1}}, measure="mrr@10") == {"q": 0.5}


def test_retrieval_graded_relevance_follows_trec_eval():
    qrels = {"q": {"d0": 0, "d1": 1, "d2": 2}}
    run = {"q": {"d0": 0.9, "d1": 0.8, "d2": 0.7}}
    scores = retrieval_scores(run, qrels)
    # NDCG gain is the grade; the judged non-relevant d0 at rank 1 gains nothing
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    assert scores["ndcg@10"] == pytest.approx(dcg / (2 + 1 / math.log2(3)))
    # MRR and recall count grade >= 1 relevant: d1 at rank 2
    assert scores["mrr@10"] == pytest.approx(0.5) and scores["recall@100"] == 1.0


def test_retrieval_per_query():
    qrels = {"q1": {"d1": 1}, "q2": {"d5": 1}, "q3": {"d9": 2}}
    run = {"q1": {"d3": 0.9, "d1": 0.8}, "q2": {"d5": 0.1}, "q3": {}}  # q3 retrieved nothing
    assert retrieval_per_query(run, qrels, measure="mrr@10") == {"q1": 0.5, "q2": 1.0, "q3": 0.0}
    ndcg = retrieval_per_query(run, qrels)
    assert ndcg == {"q1": pytest.approx(1 / math.log2(3)), "q2": 1.0, "q3": 0.0}
    assert retrieval_scores(run, qrels)["ndcg@10"] == pytest.approx(sum(ndcg.values()) / 3)
    # the judged pool leaves q1 with d1 only
    assert retrieval_per_query(run, qrels, judged_pool={"d1", "d5"}, measure="mrr@10")["q1"] == 1.0
    with pytest.raises(ValueError, match="no ranking for 1 judged queries"):
        retrieval_per_query({"q1": run["q1"], "q2": run["q2"]}, qrels)
    with pytest.raises(ValueError, match="unknown measure"):
        retrieval_per_query(run, qrels, measure="map")
