"""toyworld: a deterministic synthetic world, its pretraining corpus and its four kinds of tasks.

From a seed, :class:`World` draws people, organisations, cities, years and events, and the
relations between them (who lives where, works for whom, founded what, which event happened
where and when). From the world it writes

- a **pretraining corpus**: biographies, organisation profiles, event reports and reviews, in
  varied templates (millions of tokens in seconds), with random access by document index;
- **tasks in the schemas of the real datasets**, so the evaluation suite reads them through the
  same code path:
  - ``toy-sentiment`` (SST-2 schema: sentence, label, idx): reviews with negation and contrast
    ("the plot was dull, but the acting was superb"); word counts alone are not enough;
  - ``toy-nli`` (MNLI schema: premise, hypothesis, label 0 entailment / 1 neutral / 2 contradiction,
    idx): the premise is a review (as in toy-sentiment); the hypothesis says the reviewer liked the
    thing (entailed or contradicted by what the review means, never by the hypothesis's words) or
    states something the review does not (neutral);
  - ``toy-ner`` (CoNLL-2003 schema: id, tokens, ner_tags with the CoNLL label list): PER, ORG,
    LOC and MISC (events) mentions; some words are both surnames and cities, and bare names stand
    in contexts that say nothing of their type ("Graz was in the news again.");
  - ``toy-qa`` (SQuAD v2 schema: id, title, context, question, answers{text, answer_start}):
    someone names a person, an organisation and a city in a sentence that says nothing of which
    is which; the question asks for one kind, so the answer is found only by knowing the words
    (20% ask for a kind the sentence lacks: no answer);
  - ``toy-retrieval`` (BEIR layout: corpus {_id, title, text}, queries {_id, text}, qrels
    {query-id, corpus-id, score}): short reviews of a thing in a city, two per (thing, aspect,
    city), one praising the aspect and one criticising it; a query ("a hotel in Ghent whose
    soundtrack the reviewer loved") shares its words with both, and only the meaning of the
    review's adjective (or of its negation) tells which is relevant; held-out groups never occur
    in training.

What pretraining has to buy. Half the review adjectives and half the unambiguous names
(``held_out``) never occur in any training split of a task; half the validation and test items
(``held_out_rate``) are built on them. The corpus uses every word, and its reviews end with the
reviewer's verdict ("overall , i loved it .", never in a task), so what a model knows of a
held-out word's polarity or type it learnt in pretraining: a randomly initialised encoder can
only guess. Both fractions, ``bare_mentions`` and ``qa_unanswerable`` are parameters of
:class:`World` (the task difficulty); the corpus generator's version is ``CORPUS_VERSION``.

The measured difficulty of each task (majority, bag-of-words and term-overlap baselines) is in
``docs/toyworld.md``; ``encoderlab data toyworld DIR`` measures it again.

No download is needed, ever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoderlab.io import atomic_directory

FIRST = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko", "Liam",
         "Mara", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wim", "Xenia", "Yusuf",
         "Zoe", "Amir", "Berit", "Carlos", "Dana"]
LAST = ["Moreau", "Lindqvist", "Okafor", "Petrov", "Santos", "Weber", "Tanaka", "Novak", "Haddad", "Rossi",
        "Keller", "Dubois", "Ivanova", "Costa", "Brandt", "Sato", "Jensen", "Alvarez", "Marsh", "Quist",
        # ambiguous: also cities below
        "Florence", "Victoria", "Austin", "Orlando", "Lincoln"]
CITIES = ["Lyon", "Porto", "Oslo", "Kraków", "Tallinn", "Ghent", "Bilbao", "Turin", "Aarhus", "Graz", "Leiden",
          "Malmö", "Brno", "Split", "Cork", "Florence", "Victoria", "Austin", "Orlando", "Lincoln"]
# Organisations are often named after people or cities ("Moreau Labs", "Porto Group"), and events
# after cities ("Lyon Festival"): the tag of such a word depends on its neighbours.
ORG_STEMS = ["Nexa", "Orbit", "Helix", "Quanta", "Borealis", "Cobalt", "Lumen", "Vertex", "Meridian", "Solace",
             "Moreau", "Okafor", "Petrov", "Weber", "Tanaka", "Keller", "Austin", "Lincoln", "Porto", "Ghent",
             "Florence", "Victoria"]
ORG_SUFFIX = ["Labs", "Group", "Institute", "Works", "Partners", "Foundation"]
FIELDS = ["robotics", "chemistry", "shipping", "software", "textiles", "medicine", "energy", "publishing"]
EVENT_KINDS = ["Summit", "Festival", "Fair", "Conference", "Exhibition"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
ROLES = ["engineer", "manager", "researcher", "designer", "analyst", "director", "technician"]
ASPECTS = ["plot", "acting", "service", "food", "music", "staff", "design", "ending", "soundtrack", "price"]
THINGS = ["film", "restaurant", "hotel", "album", "game", "novel", "cafe", "show"]
POSITIVE = ["superb", "wonderful", "excellent", "delightful", "brilliant", "charming", "great", "lovely"]
NEGATIVE = ["dull", "awful", "terrible", "bland", "disappointing", "poor", "tedious", "clumsy"]
# Pretraining reviews end with the reviewer's verdict; task reviews never do. Words of a review
# therefore get their polarity from the corpus, where held-out adjectives are seen too.
VERDICTS = {1: ["overall , i loved it .", "i would go back any day ."], 0: ["overall , i hated it .", "never again ."]}
# Uninformative contexts for a bare name: only what the model knows of the word tells its type.
BARE_TEMPLATES = ["{x} was in the news again .", "everyone was talking about {x} .", "we heard a lot about {x} this year .",
                  "{x} came up twice in the report ."]
# 2: reviews carry verdicts (CORPUS_VERSION identifies the pretraining corpus a shard folder holds)
CORPUS_VERSION = 2
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # CoNLL-2003 order
NLI_LABELS = ["entailment", "neutral", "contradiction"]  # MNLI order
# toy-nli hypotheses: the reviewer liked the reviewed thing (the review entails or contradicts it: only
# its meaning tells which, never the hypothesis's words), or a fact no review states (neutral)
NLI_LIKED = ["the reviewer liked the {thing} .", "the {thing} was worth it .", "the reviewer would recommend the {thing} ."]
NLI_UNSTATED = ["the reviewer went to the {thing} with a friend .", "the {thing} was new this year .",
                "the reviewer paid for the {thing} in cash ."]
SPLIT_SIZES = {"train": 2000, "validation": 250, "test": 500}


@dataclass
class Person:
    first: str
    last: str
    city: int
    employer: int
    role: str
    born: int

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class Org:
    stem: str
    suffix: str
    city: int
    field: str
    founded: int
    founder: int

    @property
    def name(self) -> str:
        return f"{self.stem} {self.suffix}"


@dataclass
class Event:
    field: str
    kind: str
    city: int
    year: int
    month: str
    organiser: int

    place: str | None = None  # events named after a city: "Lyon Festival"

    @property
    def name(self) -> str:
        return f"{self.place or self.field.capitalize()} {self.kind}"


# Retrieval: short reviews of a thing in a city, two per (thing, aspect, city) group, one praising
# the aspect and one criticising it (in the review forms of the corpus). A query names the group
# and the reviewer's verdict ("loved" / "hated": the corpus's verdict words, which no review
# sentence uses), so the query's words find the group but cannot tell its two reviews apart: which
# one is relevant depends on what the review's adjective (or its negation) means. Validation and
# test use the first template only.
RETRIEVAL_QUERY_TEMPLATES = (
    "a {thing} in {city} whose {aspect} the reviewer {judgement}",
    "{judgement} the {aspect} of a {thing} in {city}",
    "{city} {thing} , {aspect} : {judgement}",
)
RETRIEVAL_JUDGEMENTS = {1: "loved", 0: "hated"}  # the corpus's verdict words, never in a review sentence
RETRIEVAL_GROUPS = {"train": 340, "validation": 40, "test": 120}


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _tokens(text: str) -> list[str]:
    """Whitespace tokens with punctuation split off (the CoNLL convention)."""
    out = []
    for word in text.split():
        while word and word[-1] in ",.?!":
            out.append(word[:-1]) if len(word) > 1 else None
            out.append(word[-1])
            word = ""
        if word:
            out.append(word)
    return [t for t in out if t]


def _held_out(words: list, fraction: float, seed: int, salt: int) -> set:
    """A fixed ``fraction`` of ``words`` kept out of every task's training split (seeded)."""
    order = np.random.default_rng([seed, 7, salt]).permutation(len(words))
    return {words[int(i)] for i in order[: round(fraction * len(words))]}


class World:
    """The world of ``seed``. ``held_out`` (0..1) is the lexical difficulty: the fraction of
    review adjectives and of unambiguous names that no training split of a task uses, so the
    validation and test items built on them (``held_out_rate`` of them) are solved only by what
    pretraining on the corpus taught the model about those words."""

    def __init__(self, seed: int = 0, num_people: int = 400, num_orgs: int = 60, num_events: int = 80,
                 held_out: float = 0.5, held_out_rate: float = 0.5, bare_mentions: float = 0.35,
                 qa_unanswerable: float = 0.2):
        for key, value in (("held_out", held_out), ("held_out_rate", held_out_rate), ("bare_mentions", bare_mentions),
                           ("qa_unanswerable", qa_unanswerable)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"World: {key} must be in [0, 1], got {value!r}")
        self.seed = seed
        self.held_out_rate, self.bare_mentions = held_out_rate, bare_mentions
        self.qa_unanswerable = qa_unanswerable
        self.held_out_adjectives = {1: _held_out(POSITIVE, held_out, seed, 1), 0: _held_out(NEGATIVE, held_out, seed, 2)}
        ambiguous = set(CITIES) & (set(LAST) | set(ORG_STEMS)) | (set(LAST) & set(ORG_STEMS))
        self.bare_names = {"PER": sorted(set(FIRST) | set(LAST) - ambiguous), "ORG": sorted(set(ORG_STEMS) - ambiguous),
                           "LOC": sorted(set(CITIES) - ambiguous)}
        self.held_out_names = {kind: _held_out(words, held_out, seed, 3 + i)
                               for i, (kind, words) in enumerate(sorted(self.bare_names.items()))}
        rng = np.random.default_rng([seed, 0])
        names = {(f, l) for f in FIRST for l in LAST}
        chosen = rng.permutation(sorted(names))[:num_people]
        org_names = rng.permutation([(s, x) for s in ORG_STEMS for x in ORG_SUFFIX])[:num_orgs]
        self.orgs = [Org(str(s), str(x), int(rng.integers(len(CITIES))), str(rng.choice(FIELDS)),
                         int(rng.integers(1950, 2015)), -1) for s, x in org_names]
        self.people = [Person(str(f), str(l), int(rng.integers(len(CITIES))), int(rng.integers(num_orgs)),
                              str(rng.choice(ROLES)), int(rng.integers(1950, 2000))) for f, l in chosen]
        for org_index, org in enumerate(self.orgs):
            org.founder = int(rng.integers(num_people))
        self.events = [Event(str(rng.choice(FIELDS)), str(rng.choice(EVENT_KINDS)), int(rng.integers(len(CITIES))),
                             int(rng.integers(1990, 2024)), str(rng.choice(MONTHS)), int(rng.integers(num_orgs)),
                             place=str(rng.choice(CITIES)) if rng.random() < 0.5 else None)
                       for _ in range(num_events)]

    # -- sentences: (text, entity spans [(start_char, end_char, type)]) ----------------------
    def _fact_sentences(self, person: Person, rng) -> list[tuple[str, list]]:
        org, city = self.orgs[person.employer], CITIES[person.city]
        name = person.name
        options = [
            [(f"{name} lives in {city}.", [(name, "PER"), (city, "LOC")]),
             (f"{name} has made a home in {city}.", [(name, "PER"), (city, "LOC")]),
             (f"These days {name} lives in {city}.", [(name, "PER"), (city, "LOC")])],
            [(f"{name} works for {org.name} as {_a(person.role)}.", [(name, "PER"), (org.name, "ORG")]),
             (f"{name} is {_a(person.role)} at {org.name}.", [(name, "PER"), (org.name, "ORG")])],
            [(f"{name} was born in {person.born}.", [(name, "PER")]),
             (f"Born in {person.born}, {name} grew up far from {city}.", [(name, "PER"), (city, "LOC")])],
        ]
        return [group[int(rng.integers(len(group)))] for group in options]

    @staticmethod
    def _spans(text: str, mentions: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
        spans, cursor = [], 0
        for surface, kind in mentions:
            start = text.index(surface, cursor if text.find(surface, cursor) >= 0 else 0)
            spans.append((start, start + len(surface), kind))
            cursor = start + len(surface)
        return spans

    def _adjective(self, polarity: int, rng, held: bool | None) -> str:
        """An adjective of ``polarity``: any (None), a held-out one (True) or a seen one (False)."""
        words = POSITIVE if polarity else NEGATIVE
        if held is not None:
            words = [w for w in words if (w in self.held_out_adjectives[polarity]) == held] or words
        return str(rng.choice(words))

    def _review(self, rng, held: bool | None = None) -> tuple[str, int]:
        thing, a1, a2 = str(rng.choice(THINGS)), *[str(x) for x in rng.choice(ASPECTS, size=2, replace=False)]
        pos, neg = self._adjective(1, rng, held), self._adjective(0, rng, held)
        label = int(rng.integers(2))
        good, bad = (pos, neg) if label else (neg, pos)
        kind = rng.random()
        if kind < 0.3:
            return f"the {a1} of this {thing} was {good} .", label
        if kind < 0.6:  # negation flips the adjective's polarity
            return f"the {a1} of this {thing} was not {bad} , and the {a2} was not {bad} either .", label
        if kind < 0.85:  # contrast: the clause after "but" decides
            return f"the {a1} was {bad} , but the {a2} made this {thing} {good} overall .", label
        return f"although the {a1} was {bad} , i found the {thing} {good} .", label

    # -- corpus -----------------------------------------------------------------------------
    def document(self, index: int) -> str:
        rng = np.random.default_rng([self.seed, 1, index])
        kind = index % 4
        if kind == 0:
            person = self.people[int(rng.integers(len(self.people)))]
            sentences = [s for s, _ in self._fact_sentences(person, rng)]
            rng.shuffle(sentences)
            return " ".join(sentences)
        if kind == 1:
            org = self.orgs[int(rng.integers(len(self.orgs)))]
            founder = self.people[org.founder].name
            return (f"{org.name} is a {org.field} company based in {CITIES[org.city]}. It was founded in {org.founded} "
                    f"by {founder}. Several people work for {org.name}.")
        if kind == 2:
            event = self.events[int(rng.integers(len(self.events)))]
            organiser = self.orgs[event.organiser].name
            return (f"The {event.name} took place in {CITIES[event.city]} in {event.month} {event.year}. "
                    f"It was organised by {organiser}.")
        reviews = [self._review(rng) for _ in range(int(rng.integers(1, 4)))]
        return " ".join(f"{text} {VERDICTS[label][int(rng.integers(2))]}" for text, label in reviews)

    def corpus(self, num_documents: int):
        for index in range(num_documents):
            yield self.document(index)

    # -- tasks ------------------------------------------------------------------------------
    def _split_rows(self, stream, task_seed: int) -> dict[str, list[dict]]:
        rows, split_rows = [], {}
        total = sum(SPLIT_SIZES.values())
        rng = np.random.default_rng([self.seed, 2, task_seed])
        for index in range(total):
            rows.append(stream(rng, index))
        start = 0
        for split, size in SPLIT_SIZES.items():
            split_rows[split] = rows[start : start + size]
            start += size
        return split_rows

    def _held(self, rng, index: int) -> bool:
        """Whether item ``index`` uses held-out words: never in train, ``held_out_rate`` of the others."""
        return index >= SPLIT_SIZES["train"] and bool(rng.random() < self.held_out_rate)

    def sentiment(self) -> dict[str, list[dict]]:
        def row(rng, index):
            held = self._held(rng, index)
            sentence, label = self._review(rng, held=held)
            return {"sentence": sentence + " ", "label": label, "idx": index, "held_out": held}

        return self._split_rows(row, 1)

    def nli(self) -> dict[str, list[dict]]:
        """The premise is a review (negation, contrast and held-out adjectives as in toy-sentiment);
        the hypothesis claims the reviewer liked the thing (entailed or contradicted by what the
        review says) or states something the review does not say (neutral)."""
        def row(rng, index):
            held = self._held(rng, index)
            premise, polarity = self._review(rng, held=held)
            thing = next(t for t in THINGS if f" {t} " in f" {premise} ")
            label = 1 if rng.random() < 1 / 3 else (0 if polarity else 2)
            hypothesis = str(rng.choice(NLI_UNSTATED if label == 1 else NLI_LIKED)).format(thing=thing)
            return {"premise": premise, "hypothesis": hypothesis, "label": label, "idx": index, "held_out": held}

        return self._split_rows(row, 2)

    def ner(self) -> dict[str, list[dict]]:
        def row(rng, index):
            held = self._held(rng, index)
            choice = rng.random()
            if held or choice < self.bare_mentions:  # a bare name in a context that says nothing of its type
                kind = str(rng.choice(sorted(self.bare_names)))
                words = [w for w in self.bare_names[kind] if (w in self.held_out_names[kind]) == held]
                name = str(rng.choice(words or self.bare_names[kind]))
                template = BARE_TEMPLATES[int(rng.integers(len(BARE_TEMPLATES)))]
                text = template.format(x=name)
                text = text[0].upper() + text[1:]
                mentions = [(name, kind)]
            elif choice < self.bare_mentions + 0.6 * (1 - self.bare_mentions):
                person = self.people[int(rng.integers(len(self.people)))]
                text, mentions = self._fact_sentences(person, rng)[int(rng.integers(3))]
            elif choice < self.bare_mentions + 0.8 * (1 - self.bare_mentions):
                event = self.events[int(rng.integers(len(self.events)))]
                organiser, city = self.orgs[event.organiser].name, CITIES[event.city]
                text = f"The {event.name} in {city} was organised by {organiser}."
                mentions = [(event.name, "MISC"), (city, "LOC"), (organiser, "ORG")]
            else:
                org = self.orgs[int(rng.integers(len(self.orgs)))]
                text = f"{org.name} moved to {CITIES[org.city]} in {org.founded}."
                mentions = [(org.name, "ORG"), (CITIES[org.city], "LOC")]
            tokens, tags = _tokens(text), ["O"] * len(_tokens(text))
            for surface, kind in mentions:
                words = _tokens(surface)
                for start in range(len(tokens) - len(words) + 1):
                    if tokens[start : start + len(words)] == words and all(t == "O" for t in tags[start : start + len(words)]):
                        tags[start] = f"B-{kind}"
                        for k in range(start + 1, start + len(words)):
                            tags[k] = f"I-{kind}"
                        break
            return {"id": str(index), "tokens": tokens, "ner_tags": [NER_LABELS.index(t) for t in tags], "held_out": held}

        held_words = set().union(*self.held_out_names.values())

        def unseen_in_train(rng, index):  # a held-out name never occurs in a training sentence
            for _ in range(1000):
                out = row(rng, index)
                if index >= SPLIT_SIZES["train"] or not held_words & set(out["tokens"]):
                    return out
            raise ValueError("toyworld: no training sentence without held-out names (held_out too high?)")

        return self._split_rows(unseen_in_train, 3)

    def qa(self) -> dict[str, list[dict]]:
        """Someone names three things, a person, an organisation and a city, in any order, in a
        sentence that says nothing of what each one is; the question asks for one kind, so the
        answer span is found only by knowing which word is which (held-out words: known from
        pretraining only). ``qa_unanswerable`` of the questions ask for a kind the sentence lacks
        (two of another kind are named instead: SQuAD v2's no-answer)."""
        question_of = {"PER": "Which person did {p} mention ?", "ORG": "Which organisation did {p} mention ?",
                       "LOC": "Which city did {p} mention ?"}

        held_words = set().union(*self.held_out_names.values())
        seen_speakers = [p for p in self.people if not {p.first, p.last} & held_words] or self.people

        def row(rng, index):
            held = self._held(rng, index)
            speakers = seen_speakers if index < SPLIT_SIZES["train"] else self.people  # no held-out name in training
            speaker = speakers[int(rng.integers(len(speakers)))]
            asked = str(rng.choice(sorted(self.bare_names)))
            kinds = sorted(self.bare_names)
            if rng.random() < self.qa_unanswerable:
                kinds = [k for k in kinds if k != asked]
                kinds.append(kinds[int(rng.integers(2))])
            names, used = [], set()
            for kind in kinds:
                pool = [w for w in self.bare_names[kind] if (w in self.held_out_names[kind]) == held and w not in used]
                name = str(rng.choice(pool or [w for w in self.bare_names[kind] if w not in used]))
                used.add(name)
                names.append((name, kind))
            order = rng.permutation(len(names))
            names = [names[int(i)] for i in order]
            verb = ["mentioned", "talked about", "wrote about"][int(rng.integers(3))]
            context = f"{speaker.name} {verb} {names[0][0]} , {names[1][0]} and {names[2][0]} ."
            question = question_of[asked].format(p=speaker.name)
            match = [n for n, kind in names if kind == asked]
            if match:
                start = context.index(f" {match[0]} ", len(speaker.name)) + 1
                answers = {"text": [match[0]], "answer_start": [start]}
            else:
                answers = {"text": [], "answer_start": []}
            return {"id": f"toyqa-{index}", "title": speaker.name, "context": context, "question": question,
                    "answers": answers, "held_out": held}

        return self._split_rows(row, 4)

    def _retrieval_review(self, thing: str, aspect: str, city: str, polarity: int, rng, held: bool | None) -> str:
        kind = rng.random()
        if kind < 0.4:
            return f"the {aspect} of the {thing} in {city} was {self._adjective(polarity, rng, held)} ."
        if kind < 0.7:  # negation: the adjective has the other polarity
            return f"the {aspect} of the {thing} in {city} was not {self._adjective(1 - polarity, rng, held)} ."
        return f"in {city} , the {thing} had {_a(self._adjective(polarity, rng, held))} {aspect} ."

    def retrieval(self) -> dict:
        """BEIR-style retrieval where lexical matching finds the right pair of reviews but only
        the meaning of an adjective (a held-out one at ``held_out_rate`` in validation and test)
        picks the relevant one. Groups never cross splits; every query has one relevant review."""
        rng = np.random.default_rng([self.seed, 6])
        combos = [(t, a, c) for t in THINGS for a in ASPECTS for c in CITIES]
        order = rng.permutation(len(combos))
        corpus, queries, qrels, start = [], {}, {}, 0
        for split, size in RETRIEVAL_GROUPS.items():
            queries[split], qrels[split] = [], []
            templates = RETRIEVAL_QUERY_TEMPLATES if split == "train" else RETRIEVAL_QUERY_TEMPLATES[:1]
            for group_index in order[start : start + size]:
                thing, aspect, city = combos[int(group_index)]
                polarities = [0, 1] if rng.random() < 0.5 else [1, 0]  # corpus order says nothing
                for polarity in polarities:
                    held = split != "train" and bool(rng.random() < self.held_out_rate)
                    doc_id = f"d{len(corpus)}"
                    corpus.append({"_id": doc_id, "title": "", "text": self._retrieval_review(
                        thing, aspect, city, polarity, rng, held)})
                    for template_index, template in enumerate(templates):
                        qid = f"q{doc_id[1:]}-{template_index}"
                        text = template.format(thing=thing, aspect=aspect, city=city,
                                               judgement=RETRIEVAL_JUDGEMENTS[polarity])
                        queries[split].append({"_id": qid, "text": text, "held_out": held})
                        qrels[split].append({"query-id": qid, "corpus-id": doc_id, "score": 1})
            start += size
        return {"corpus": corpus, "queries": queries, "qrels": qrels}

    def tasks(self) -> dict[str, dict]:
        return {
            "toy-sentiment": {"type": "sc", "schema": "glue/sst2", "splits": self.sentiment(), "labels": ["negative", "positive"]},
            "toy-nli": {"type": "sc-pair", "schema": "glue/mnli", "splits": self.nli(), "labels": NLI_LABELS},
            "toy-ner": {"type": "tc", "schema": "conll2003", "splits": self.ner(), "labels": NER_LABELS},
            "toy-qa": {"type": "qa", "schema": "squad_v2", "splits": self.qa()},
            "toy-retrieval": {"type": "ir", "schema": "beir", **self.retrieval()},
        }


def export_tasks(world: World, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Writes every task as JSON lines in its hub schema (BEIR layout for retrieval)."""
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        for name, task in world.tasks().items():
            folder = tmp / name
            folder.mkdir()
            info = {k: v for k, v in task.items() if k not in ("splits", "corpus", "queries", "qrels")}
            (folder / "task.json").write_text(json.dumps({**info, "seed": world.seed}, indent=2) + "\n")
            if task["type"] == "ir":  # the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
                _write_jsonl(folder / "corpus.jsonl", task["corpus"])
                _write_jsonl(folder / "queries.jsonl", [q for split in task["queries"] for q in task["queries"][split]])
                for split in task["queries"]:
                    lines = ["query-id\tcorpus-id\tscore"] + [
                        f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}" for r in task["qrels"][split]]
                    (folder / "qrels").mkdir(exist_ok=True)
                    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
            else:
                for split, rows in task["splits"].items():
                    _write_jsonl(folder / f"{split}.jsonl", rows)
    return output_dir


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

