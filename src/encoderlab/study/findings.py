"""The paper's findings, tested on a study's runs: claims as data, verdicts computed from the results.

Each :class:`Finding` names two kinds of model (``mlm``, ``clm``, ``clm->mlm``, ``cpt<-clm``,
``cpt<-mlm``, ``random-init``, ``pretrained``), a task category (or every category), what is
measured (the test score at the LR selected on validation, or the LR sensitivity) and the claimed
direction: ``A - B > -margin`` (margin 0: A beats B; a positive margin: A is within ``margin``
points of B or better). A finding is evaluated for every pair of the study's models of those two
kinds that are comparable (same size and number of pretraining steps; the random-init baseline
pairs with every pretrained model of its size), and omitted when the study has no such pair.

For a pair, a model's score is the mean over the categories of the mean over each category's tasks
(of the tasks both models have on the same (protocol, data) group: runs of different protocols or
data are never compared) of its test score at the LR selected on validation, averaged over seeds.
The difference A - B is tested by the report's one inference procedure
(:mod:`encoderlab.evaluation.inference`: fine-tuning seeds and test items both as sources of
chance); a claim marked ``items="held_out"`` is scored on the items whose key words fine-tuning
never saw (toyworld). The verdict uses the p-value adjusted by Holm over every row of the study's
findings (level 0.05): ``reproduced``, ``contradicted`` or ``inconclusive``, always printed with
the regime it was measured in (pretraining tokens per parameter, and the paper's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from encoderlab.evaluation.inference import category_weights, combine, seed_difference, task_difference, verdict
from encoderlab.evaluation.items import subset_index
from encoderlab.evaluation.stats import holm, lr_spread_by_seed, seedwise_mean
from encoderlab.evaluation.tasks import get_task
from encoderlab.study.overview import regime_of, selected_runs
from encoderlab.model import ModelConfig
from encoderlab.training.presets import PAPER_BATCH_TOKENS

ALPHA = 0.05
CATEGORIES = ("SC", "TC", "QA", "IR")
DEFAULT_MASK_RATIO = 0.4  # several MLM models of one size and budget: the paper compares MLM-40


@dataclass(frozen=True)
class Finding:
    id: str
    claim: str  # in words, with A and B as the models named by ``a`` and ``b``
    paper: str  # where the paper says it, with its numbers
    a: str  # model kind of A (see model_kinds)
    b: str  # model kind of B
    category: str | None = None  # SC / TC / QA / IR; None: mean over every category the pair has
    measure: str = "score"  # "score": test score at the selected LR; "lr_spread": LR sensitivity
    margin: float = 0.0  # the claim is A - B > -margin (points x100)
    checkpoints: str = "final"  # "final", or "earliest": the earliest intermediate step both models have
    items: str | None = None  # "held_out": scored on the items whose key words fine-tuning never saw (where marked)


_TWO_STAGE = {"SC": "87.85 vs 87.00", "TC": "93.07 vs 92.21", "QA": "67.77 vs 62.77", "IR": "79.88 vs 79.55"}
_CPT = {"SC": "88.40 vs 87.47", "TC": "92.70 vs 92.11", "IR": "80.70 vs 80.45"}

FINDINGS: tuple[Finding, ...] = (
    Finding(id="mlm>clm:SC", claim="MLM beats CLM on sequence classification", a="mlm", b="clm", category="SC",
            paper="finding 1, Fig. 2 (610M, 42K steps: 87.00 vs 83.58)"),
    Finding(id="mlm>clm:QA", claim="MLM beats CLM on question answering (the paper's largest gap)", a="mlm", b="clm",
            category="QA", paper="finding 1, Fig. 2 (610M: 62.77 vs 42.09)"),
    Finding(id="mlm>clm:IR", claim="MLM beats CLM on retrieval", a="mlm", b="clm", category="IR",
            paper="finding 2, Fig. 2 (610M: 79.55 vs 76.20; the gap narrows with size)"),
    Finding(id="clm>=mlm:TC", claim="CLM is competitive with MLM (within 1 point) or better on token classification",
            a="clm", b="mlm", category="TC", margin=1.0, paper="finding 2, Fig. 2 (610M: 92.69 vs 92.21)"),
    Finding(id="clm>mlm:early", claim="CLM is ahead of MLM early in pretraining (earliest checkpoint both have)",
            a="clm", b="mlm", checkpoints="earliest",
            paper="finding 3, Fig. 4 (610M at 5K steps: SC 78.56 vs 72.49, QA 34.30 vs 27.89)"),
    Finding(id="clm-lr-stable", claim="CLM is less sensitive to the fine-tuning LR than MLM (A, B: LR spread)",
            a="mlm", b="clm", measure="lr_spread", paper="finding 3, Fig. 5 (over LRs 1e-5 to 1e-4; a figure only)"),
    *(Finding(id=f"clm->mlm>mlm:{c}", claim=f"CLM then MLM beats MLM at the same number of steps on {c}",
              a="clm->mlm", b="mlm", category=c,
              paper=f"finding 5, Fig. 6 (610M, 42K steps, 10K CLM + 32K MLM: {_TWO_STAGE[c]})") for c in CATEGORIES),
    *(Finding(id=f"cpt<-clm>cpt<-mlm:{c}", claim=f"MLM continued on a CLM model beats MLM continued on an MLM model "
              f"on {c}", a="cpt<-clm", b="cpt<-mlm", category=c,
              paper=f"finding 6, Figs. 8-9 (610M + 22K MLM steps: {_CPT[c]})") for c in _CPT),
    Finding(id="pretrained>random", claim="Pretraining beats no pretraining on held-out items (a sanity check, not a "
            "paper claim)", a="pretrained", b="random-init", items="held_out",
            paper="the random-init baseline, same architecture and fine-tuning grid; judged on the items whose key "
                  "words fine-tuning never saw, which only pretraining can teach"),
)


def model_kinds(fact: dict, facts: dict) -> set[str]:
    """The kinds of model a report fact (``report._run_facts``) is."""
    if fact.get("random_init"):
        return {"random-init"}
    kinds = {"pretrained"}
    objectives = fact.get("objectives") or []
    parent = fact.get("cpt_parent")
    if parent:  # continued pretraining: the paper's kinds are MLM continued (not MNTP, not CLM)
        parent_kinds = model_kinds(facts[parent], facts) if parent in facts and objectives == ["mlm"] else set()
        kinds |= {f"cpt<-{k}" for k in parent_kinds & {"clm", "mlm"}}
    elif objectives == ["clm"]:
        kinds.add("clm")
    elif objectives == ["mlm"]:
        kinds.add("mlm")
    elif len(objectives) == 2 and objectives == ["clm", "mlm"]:
        kinds.add("clm->mlm")
    return kinds


def _pair_key(fact: dict, with_random_init: bool):
    if with_random_init:  # the baseline trained nothing: it pairs with every final model of its size
        return (fact["size"],)
    return fact["size"], fact["parent_steps"] + fact["step"], fact["final"]


def _candidates(kind: str, facts: dict, finding: Finding) -> dict:
    """Models of ``kind`` by pair key; of several MLM-phase models differing only in masking ratio,
    the one nearest MLM-40 (the paper's comparisons use MLM-40)."""
    random_pair = "random-init" in (finding.a, finding.b)
    groups: dict = {}
    for label, fact in facts.items():
        if kind not in model_kinds(fact, facts):
            continue
        if kind != "random-init" and (finding.checkpoints == "final") != fact["final"]:
            continue
        groups.setdefault(_pair_key(fact, random_pair), []).append(label)
    if kind in ("mlm", "clm->mlm", "cpt<-clm", "cpt<-mlm"):
        for key, labels in groups.items():
            def distance(label):
                ratio = facts[label].get("mask_ratio")
                return abs(ratio - DEFAULT_MASK_RATIO) if ratio is not None else math.inf

            best = min(distance(label) for label in labels)
            groups[key] = [label for label in labels if distance(label) == best]
    return groups


def _pairs(finding: Finding, facts: dict) -> list[tuple[str, str]]:
    a, b = _candidates(finding.a, facts, finding), _candidates(finding.b, facts, finding)
    pairs = [(x, y) for key in a if key in b for x in sorted(a[key]) for y in sorted(b[key]) if x != y]
    if finding.checkpoints == "earliest" and pairs:
        earliest = min(facts[x]["parent_steps"] + facts[x]["step"] for x, _ in pairs)
        pairs = [(x, y) for x, y in pairs if facts[x]["parent_steps"] + facts[x]["step"] == earliest]
    return pairs


def _entries(results: dict, label: str, task: str) -> list[dict]:
    return [tasks[task] for tasks in results.values() if task in tasks and tasks[task].get("model") == label]


def category_mean_by_seed(columns: dict[str, dict[int, float]]) -> dict[int, float]:
    """Seed by seed: the mean over categories of the mean over each category's tasks (``columns``:
    per task, its scores keyed by seed; only seeds every task has)."""
    by_category: dict[str, list] = {}
    for task, column in columns.items():
        by_category.setdefault(get_task(task).category, []).append(column)
    return seedwise_mean([seedwise_mean(cols) for cols in by_category.values()])


def _subset(runs_a: list, runs_b: list, items: str | None):
    """The item indices of ``items`` (``held_out`` or None) shared by both models' runs, or None
    (every item); ``(None, False)`` when the task marks no held-out items."""
    if items is None:
        return None, True
    masks = [r.held_out for r in (*runs_a, *runs_b)]
    if any(m is None for m in masks) or len({m.tobytes() for m in masks}) != 1:
        return None, False
    return subset_index(masks[0], items), True


def _task_difference(finding: Finding, ea: dict, eb: dict):
    """(difference, a's and b's per-seed values, the items used) for one task, or a reason it has none."""
    if finding.measure == "lr_spread":
        sa, sb = lr_spread_by_seed(ea["runs"]), lr_spread_by_seed(eb["runs"])
        if not sa or not sb:
            return "every LR diverged, or one LR"
        return seed_difference(list(sa.values()), list(sb.values())), sa, sb, "all"
    ra, rb = selected_runs(ea), selected_runs(eb)
    if not ra or not rb:
        sa = ea["summary"].by_seed() if ea["summary"] is not None else {}
        sb = eb["summary"].by_seed() if eb["summary"] is not None else {}
        if not sa or not sb:
            return "every LR diverged"
        # runs recorded without their test items (an older database): the seed components only
        return seed_difference(list(sa.values()), list(sb.values())), sa, sb, "seeds only (no items recorded)"
    index, marked = _subset(ra, rb, finding.items)
    used = finding.items if (finding.items and marked) else "all"
    try:
        difference = task_difference([r.items for r in ra], [r.items for r in rb], index)
    except ValueError as err:
        return str(err)
    return (difference, {r.seed: r.items.score(index) for r in ra}, {r.seed: r.items.score(index) for r in rb}, used)


def paper_regime() -> dict:
    """The paper's main regime: its 610M model pretrained 42k steps of 2,359,296 tokens."""
    params = ModelConfig.from_name("610m").num_parameters(include_head=False)
    tokens = 42_000 * PAPER_BATCH_TOKENS
    return {"model": "610m, 42k steps", "tokens": tokens, "parameters": params, "tokens_per_parameter": tokens / params}


def regime_text(row: dict) -> str:
    """"at 1.1 tokens/parameter (paper: 163)" for a finding row (both models' figures if they differ)."""
    values = [row["regime"][k]["tokens_per_parameter"] for k in ("a", "b")]
    shown = sorted({round(v, 2) for v in values if v})
    paper = row["regime"]["paper"]["tokens_per_parameter"]
    ours = " / ".join(f"{v:.3g}" for v in shown) if shown else "0 (no pretraining)"
    return f"at {ours} tokens/parameter (paper: {paper:.0f})"


def evaluate_pair(finding: Finding, results: dict, a: str, b: str, tasks: list[str], facts: dict | None = None) -> dict | None:
    """The finding's test on models ``a`` and ``b`` over the tasks of its category
    (:mod:`encoderlab.evaluation.inference`: seeds and items); None when no task of the category has
    runs of both on one (protocol, data) group. The verdict is set by :func:`evaluate_findings`
    from the Holm-adjusted p."""
    used, skipped, parts, columns_a, columns_b, items_used = [], [], {}, {}, {}, set()
    for task in tasks:
        if finding.category is not None and get_task(task).category != finding.category:
            continue
        ea, eb = _entries(results, a, task), _entries(results, b, task)
        if not ea or not eb:
            continue
        common = {e["group"] for e in ea} & {e["group"] for e in eb}
        if len(common) != 1:  # never compare runs on different data or protocols
            skipped.append(f"{task} (no single common data/protocol group)")
            continue
        group = common.pop()
        outcome = _task_difference(finding, next(e for e in ea if e["group"] == group),
                                   next(e for e in eb if e["group"] == group))
        if isinstance(outcome, str):
            skipped.append(f"{task} ({outcome})")
            continue
        used.append(task)
        parts[task], columns_a[task], columns_b[task], subset = outcome
        items_used.add(subset)
    if not used:
        return None
    weights = category_weights({t: get_task(t).category for t in used})
    test = combine([(weights[t], parts[t]) for t in used]).test(margin=finding.margin)
    per_a, per_b = category_mean_by_seed(columns_a), category_mean_by_seed(columns_b)
    seeds = sorted(set(per_a) & set(per_b))
    facts = facts or {}
    return {"id": finding.id, "claim": finding.claim, "paper": finding.paper, "a": a, "b": b,
            "category": finding.category or "all", "measure": finding.measure, "tasks": used, "skipped": skipped,
            "items": _items_text(items_used),
            "a_mean": sum(weights[t] * float(np.mean(list(columns_a[t].values()))) for t in used),
            "b_mean": sum(weights[t] * float(np.mean(list(columns_b[t].values()))) for t in used),
            "a_per_seed": [per_a[s] for s in seeds], "b_per_seed": [per_b[s] for s in seeds],
            "difference": test["difference"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
            "se": test["se"], "df": test["df"], "seed_variance": test["seed_variance"],
            "item_variance": test["item_variance"], "margin": finding.margin,
            "n": min(min(len(c) for c in columns_a.values()), min(len(c) for c in columns_b.values())),
            "seeds": seeds, "p": test["p_value"], "test": test,
            "regime": {"a": regime_of(facts.get(a, {})), "b": regime_of(facts.get(b, {})), "paper": paper_regime()}}


def _items_text(used: set[str]) -> str:
    if used == {"held_out"}:
        return "held-out items"
    if len(used) == 1:
        return next(iter(used)).replace("all", "all items")
    return "mixed: " + ", ".join(sorted(u.replace("held_out", "held-out items") for u in used))


def evaluate_findings(results: dict, facts: dict, tasks: list[str], findings=FINDINGS) -> list[dict]:
    """Every finding the study's runs can test, one row per comparable pair of models; each verdict
    uses Holm's adjusted p over the rows (the unadjusted p is kept beside it) and states its regime."""
    rows = []
    for finding in findings:
        for a, b in _pairs(finding, facts):
            row = evaluate_pair(finding, results, a, b, tasks, facts)
            if row is not None:
                rows.append(row)
    finite = [i for i, r in enumerate(rows) if math.isfinite(r["p"])]
    for i, p in zip(finite, holm([rows[i]["p"] for i in finite]) if finite else []):
        rows[i]["p_holm"] = p
    for row in rows:
        row.setdefault("p_holm", math.nan)
        row["verdict"] = verdict(row.pop("test"), row["p_holm"], ALPHA)
        row["regime_text"] = regime_text(row)
    return rows


INTRO = ("Each claim of the paper that this study's runs can test, computed from the results database. A model's "
         "score is the mean over categories of its tasks' test scores at the LR selected on validation, averaged "
         "over fine-tuning seeds; the LR sensitivity (LR spread) is, seed by seed, the best minus the worst test "
         "score across the LR grid. A - B is tested by one procedure for every comparison in this report: the "
         "variance of the difference has a part from the fine-tuning seeds (each model's spread across its seeds) "
         "and a part from the test items (the same items score both models), combined in a Student t with "
         "Welch-Satterthwaite degrees of freedom (encoderlab.evaluation.inference; coverage and size checked by "
         "simulation in docs/inference.md). The verdict uses p (Holm), adjusted over every row: **reproduced** "
         f"when A - B > -margin with p (Holm) < {ALPHA}, **contradicted** when A - B < -margin with p (Holm) < "
         f"{ALPHA}, **inconclusive** otherwise. Every verdict states the regime it was measured in: pretraining "
         "tokens per parameter of the models, against the paper's. 'Pretraining beats no pretraining' is judged "
         "on the held-out items (key words the fine-tuning data never contains). A verdict is about the study's "
         "checkpoints: with one pretraining run per model, the variance of pretraining itself (its seed) is not "
         "in the test (docs/demo.md measures how much it moves the demo's verdicts). Findings the study has no "
         "runs for are omitted.")


def _num(value: float, digits: int = 2) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "<0.0001" if math.isfinite(value) and value < 1e-4 else _num(value, 4)


def findings_lines(rows: list[dict]) -> list[str]:
    """The findings table as Markdown lines (also turned into HTML by the report)."""
    lines = ["| claim | paper | A | B | tasks | items | A (mean) | B (mean) | A - B [95% CI] | seeds | p | p (Holm) "
             "| verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        measure = " (LR spread)" if r["measure"] == "lr_spread" else ""
        ci = f" [{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if math.isfinite(r["ci_low"]) else ""
        margin = f" (margin {r['margin']:g})" if r["margin"] else ""
        tasks = ", ".join(r["tasks"]) + ("; skipped: " + ", ".join(r["skipped"]) if r["skipped"] else "")
        lines.append(f"| {r['claim']}{margin} | {r['paper']} | {r['a']} | {r['b']} | {tasks} | {r['items']} | "
                     f"{_num(r['a_mean'])}{measure} | {_num(r['b_mean'])}{measure} | {_num(r['difference'])}{ci} | "
                     f"{r['n']} | {_p(r['p'])} | {_p(r['p_holm'])} | **{r['verdict']}** {r['regime_text']} |")
    return lines
