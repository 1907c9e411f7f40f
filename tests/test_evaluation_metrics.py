import math

import pytest

from encoderlab.evaluation.metrics import (
    accuracy,
    entity_scores,
    normalize_answer,
    record_scores,
    retrieval_scores,
    squad_scores,
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


def test_record_takes_the_best_of_the_gold_entities():
    scores = record_scores({"a": "Barack Obama", "b": "US"}, {"a": ["Obama", "Barack Obama"], "b": ["United States"]})
    assert scores["exact"] == 50.0 and scores["f1"] == 50.0
    with pytest.raises(ValueError, match="SQuAD v1.1 does not allow"):
        record_scores({"a": ""}, {"a": []})


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
