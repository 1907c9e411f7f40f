"""Word-level reference points for the toyworld tasks: what a model must beat to have learnt more
than the words (majority and random labels, bag-of-words naive Bayes, a word-to-tag lookup, the
always-no-answer QA score, random and term-overlap retrieval). Measured values are in
``docs/toyworld.md``; ``encoderlab data toyworld DIR`` prints them.
"""

from __future__ import annotations

import math
from collections import Counter

from encoderlab.data.toyworld import RETRIEVAL_QUERY_TEMPLATES, World, _tokens

__all__ = ["measure_baselines"]


def _naive_bayes_accuracy(train: list[tuple[str, int]], test: list[tuple[str, int]]) -> float:
    """Multinomial naive Bayes on unigram counts (add-one smoothing): the bag-of-words baseline."""
    labels = sorted({y for _, y in train})
    counts = {y: Counter() for y in labels}
    priors = Counter(y for _, y in train)
    for text, y in train:
        counts[y].update(text.lower().split())
    vocab = set().union(*counts.values())
    totals = {y: sum(c.values()) + len(vocab) for y, c in counts.items()}
    correct = 0
    for text, y in test:
        scores = {c: math.log(priors[c]) + sum(math.log((counts[c][w] + 1) / totals[c]) for w in text.lower().split())
                  for c in labels}
        correct += max(scores, key=scores.get) == y
    return correct / len(test)


def measure_baselines(world: World) -> dict:
    """Majority, random and bag-of-words / lookup baselines on the test splits."""
    tasks = world.tasks()
    out = {}
    for name in ("toy-sentiment", "toy-nli"):
        splits = tasks[name]["splits"]
        test_labels = [r["label"] for r in splits["test"]]
        majority = Counter(r["label"] for r in splits["train"]).most_common(1)[0][0]
        text = (lambda r: r["sentence"]) if name == "toy-sentiment" else (lambda r: r["premise"] + " || " + r["hypothesis"])
        out[name] = {
            "majority_accuracy": sum(y == majority for y in test_labels) / len(test_labels),
            "random_accuracy": 1 / len(tasks[name]["labels"]),
            "bag_of_words_nb_accuracy": _naive_bayes_accuracy([(text(r), r["label"]) for r in splits["train"]],
                                                              [(text(r), r["label"]) for r in splits["test"]]),
        }
    ner = tasks["toy-ner"]["splits"]
    lookup = {}
    for row in ner["train"]:
        for token, tag in zip(row["tokens"], row["ner_tags"]):
            lookup.setdefault(token, Counter())[tag] += 1
    entity_tokens = correct = 0
    for row in ner["test"]:
        for token, tag in zip(row["tokens"], row["ner_tags"]):
            if tag != 0:
                entity_tokens += 1
                guess = lookup[token].most_common(1)[0][0] if token in lookup else 0
                correct += guess == tag
    out["toy-ner"] = {"all_O_entity_f1": 0.0, "word_lookup_entity_token_accuracy": correct / entity_tokens}
    qa = tasks["toy-qa"]["splits"]["test"]
    unanswerable = sum(not r["answers"]["text"] for r in qa) / len(qa)
    out["toy-qa"] = {"unanswerable_fraction": unanswerable, "always_no_answer_f1": unanswerable}
    retrieval = tasks["toy-retrieval"]
    n = len(retrieval["corpus"])
    # one relevant document among n: a random ranking finds it in the top 10 with probability 10/n
    expected_ndcg = sum(1 / math.log2(rank + 2) for rank in range(10)) / n
    out["toy-retrieval"] = {"corpus_size": n, "train_queries": len(retrieval["queries"]["train"]),
                            "test_queries": len(retrieval["queries"]["test"]), "random_ndcg@10": expected_ndcg,
                            "term_overlap_ndcg@10": _term_overlap_ndcg(retrieval, "test")}
    return out


def _term_overlap_ndcg(retrieval: dict, split: str) -> float:
    """NDCG@10 of ranking each document by how many distinct query words it contains (a lexical
    reference point: it finds the query's pair of reviews, and ties within it)."""
    import ir_measures
    from ir_measures import nDCG

    template_words = set(_tokens(RETRIEVAL_QUERY_TEMPLATES[0].format(thing="", aspect="", city="", judgement="")))
    documents = [(doc["_id"], set(_tokens(doc["text"]))) for doc in retrieval["corpus"]]
    run = {}
    for query in retrieval["queries"][split]:
        words = set(_tokens(query["text"])) - template_words
        scored = sorted(((len(words & doc_words), -index, doc_id)
                         for index, (doc_id, doc_words) in enumerate(documents)), reverse=True)[:100]
        # ties keep corpus order; the score is a rank-derived float so ir_measures sees a strict order
        run[query["_id"]] = {doc_id: float(100 - rank) for rank, (_, _, doc_id) in enumerate(scored)}
    qrels = {}
    for row in retrieval["qrels"][split]:
        qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = row["score"]
    return ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]

