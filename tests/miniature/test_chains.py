"""World v5's problems: chains of 1-3 events whose every step quotes the question (what makes copying learnable)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from d2lora_exp.miniature import chains
from d2lora_exp.miniature import world as W


@pytest.fixture(scope="module")
def problems() -> list[W.Problem]:
    return W._unique_problems(W.World(0, 5), random.Random(1), 3000, set())


def test_difficulties_span_one_to_three_steps_in_equal_shares(problems):
    counts = Counter(len(p.steps) for p in problems)
    assert set(counts) == set(chains.STEPS)
    assert all(abs(counts[k] / len(problems) - 1 / 3) < 0.05 for k in chains.STEPS), counts
    assert 0.15 < sum(p.steps[0][1] == "*" for p in problems) / len(problems) < 0.35


def test_every_step_chains_and_stays_in_range(problems):
    for p in problems:
        assert len(p.clauses) == len(p.steps)
        for k, (x, op, y, r) in enumerate(p.steps):
            assert W._apply(x, op, y) == r and 0 <= r <= W.MAX_VALUE
            if k:
                assert x == p.steps[k - 1][3]  # each step starts from the previous result
        assert p.answer == p.steps[-1][3]


def test_each_clause_is_a_verbatim_span_that_quotes_its_operands(problems):
    for p in problems:
        for k, (clause, (x, _op, y, _)) in enumerate(zip(p.clauses, p.steps)):
            assert p.question.count(clause) == 1, (clause, p.question)
            numbers = re.findall(r"\d+", clause)
            assert str(y) in numbers and (k > 0 or str(x) in numbers), (clause, p.steps[k])
            if k:  # anchored on the previous event: the clause starts where the previous one's event is
                previous_event = p.clauses[k - 1].split(" and ", 1)[-1].split(", then ")[-1]
                if p.steps[0][1] == "*" and k == 1:
                    previous_event = p.clauses[0].removeprefix("has ")
                assert clause.startswith(previous_event + ", then "), (clause, p.clauses[k - 1])
        # the spans follow each other through the question
        positions = [p.question.index(c) for c in p.clauses]
        assert positions == sorted(positions)


def test_events_never_repeat_within_a_question(problems):
    for p in problems:
        first = [] if p.steps[0][1] == "*" else [p.clauses[0].split(" and ", 1)[1]]
        events = first + [c.split(", then ")[-1] for c in p.clauses[1:]]
        assert len(events) == len(p.steps) - (p.steps[0][1] == "*") and len(set(events)) == len(events)


def test_task_solutions_quote_the_clauses_and_corpus_solutions_never_use_task_conventions(problems):
    rng = random.Random(0)
    for p in problems[:300]:
        row = chains.math_row(rng, p)
        steps = (row["initial_reason_steps"] + row["full_chosen"]).splitlines()[:-1]
        assert [re.sub(r"^Step \d+: ", "", s).rsplit(": ", 1)[0] for s in steps] == list(p.clauses)
        assert all(s.startswith(f"Step {i + 1}: ") for i, s in enumerate(steps))
        # the rejected solution goes wrong at the chosen step and computes consistently from there
        rejected = (row["initial_reason_steps"] + row["full_rejected"]).splitlines()
        for line in rejected[:-1]:
            x, op, y, r = re.search(r"(\d+) ([-+*]) (\d+) = (\d+)\.$", line).groups()
            assert W._apply(int(x), op, int(y)) == int(r) or line == row["rejected"].rstrip("\n")
        chosen_answer = (row["initial_reason_steps"] + row["full_chosen"]).splitlines()[-1]
        assert rejected[-1] != chosen_answer and row["full_rejected"].startswith(row["rejected"])
        prose = chains.worked_solution(rng, p)
        assert all(f"{c}: " in prose for c in p.clauses)
        assert not any(f in prose for f in W.FORBIDDEN) and prose.endswith(f"{W._plural(p.answer, p.item)}.")


def test_recall_documents_restate_earlier_lines():
    w, rng, forms = W.World(0, 5), random.Random(3), Counter()
    for _ in range(200):
        first, second = chains.recall_doc(w, rng).split("\n")
        stated = set(re.findall(r"[A-Z][a-z]+ [^.]*\d[^.]*\.", first))
        restated = re.findall(r"[A-Z][a-z]+ [^.]*\d[^.]*\.", second.split(": ", 1)[1])
        assert len(restated) >= 2 and set(restated) <= stated and len(stated) == first.count(".")
        forms.update("has" if re.fullmatch(r"\w+ has \d+ \w+\.", s) else "containers" if " in each" in s else
                     "has and event" if " and " in s else "event" for s in stated)
    assert set(forms) == {"has", "event", "containers", "has and event"}  # every form a question's events take
    assert all(count > 0.15 * sum(forms.values()) for count in forms.values()), forms


def test_the_v5_corpus_mix_gives_15_percent_to_recall_documents():
    w = W.World(0, 5)
    docs = W.pretraining_corpus(w, 0, 4000)
    recall = sum(bool(re.search(r"\n(Again|To repeat|In short): ", d)) for d in docs) / len(docs)
    arithmetic = sum(bool(re.fullmatch(r"(\d+ (\+|-|\*|plus|minus|times) \d+ (=|makes|is) \d+\.?\n?)+", d))
                     for d in docs) / len(docs)
    assert 0.13 < recall < 0.17 and 0.15 < arithmetic < 0.19
    v3 = W.pretraining_corpus(W.World(0, 3), 0, 4000)
    assert not any(re.search(r"\n(Again|To repeat|In short): ", d) for d in v3)


def test_the_entities_are_the_same_in_every_version():
    assert W.World(0, 3).facts() == W.World(0, 5).facts()
    with pytest.raises(ValueError, match="unknown world version 4"):
        W.World(0, 4)


def _tail_event() -> re.Pattern:
    """An event past chains.KNOWN with its number, in the present or the past tense."""
    words = {w for e in chains.EVENTS[chains.KNOWN:] for w in (e[1].split()[0], e[2].split()[0])}
    return re.compile(r"\b(" + "|".join(sorted(words)) + r") \d")


def test_events_follow_a_long_tail_and_the_tail_never_says_more(problems):
    """Zipf weights: the seven known events are the common ones, the rarest tail event still shows up (so the
    accuracy a training set buys grows with its size); a tail event's verb alone tells its operation."""
    seen = Counter(e for p in problems for e in chains.EVENTS if re.search(
        r"\b" + e[1].replace("{n}", r"\d+") + r"(,|\.)", p.question))
    ranked = [seen[e] for e in chains.EVENTS]
    assert all(ranked) and ranked[0] > 5 * ranked[-1]
    head = sum(ranked[: chains.KNOWN]) / sum(ranked)
    assert 0.5 < head < 0.75, head
    assert not [e for e in chains.EVENTS[chains.KNOWN:] if "more" in e[1]]
    assert len({e[1].split()[0] for e in chains.EVENTS}) >= len(chains.EVENTS) - 1  # "gives" twice in the head


def test_the_corpus_computes_only_with_known_events_and_only_recall_documents_name_the_tail():
    """What the base model can learn about an event's arithmetic: the corpus's stories and worked solutions use the
    KNOWN events only; recall documents copy tail events without any result, so the words are known, their
    operations are not."""
    tail = _tail_event()
    docs = W.pretraining_corpus(W.World(0, 5), 0, 4000)
    recall = [d for d in docs if re.search(r"\n(Again|To repeat|In short): ", d)]
    assert not [d for d in docs if tail.search(d) and d not in recall]
    assert sum(bool(tail.search(d)) for d in recall) > 0.3 * len(recall)
    assert not [d for d in recall if re.search(r"\d+ [-+*] \d+ = \d+|, so ", d)]
