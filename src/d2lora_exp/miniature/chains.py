"""World v5's word problems: chains of 1 to 3 events whose solutions quote the question.

Why a new problem family (world v5 is the default since its curves were measured; v3 is `experiment=miniature_v3`;
see README, "The miniature world"): world v3's problems all take two steps, so a learning curve over training-set size is flat until the
model learns to copy the question's numbers into its equations, then jumps (5-10% up to n=1,000, 60-88% at 2,000):
a cliff that turns float noise into 45-point swings between CPUs. Three changes give the task room to be learnt a
little at a time (docs/miniature/world-v5.md):

- **Difficulty spans 1, 2 and 3 steps** (equal shares).
- **Every step quotes a verbatim span of the question** ("Step 2: finds 3 more, then gives away 4: 15 - 4 = 11."),
  and step k > 1 starts with the previous step's event: writing a step is an induction copy (find the last event in
  the question, continue it), which a base model with a word-level tokenizer learns in pretraining (a byte-level one
  did not). The corpus's worked solutions (prose, never the tasks' "Step k:") quote the same spans, and 15% of its
  documents are recall documents that restate earlier sentences with their numbers.
- **A long tail of events** (EVENTS, Zipf weights): the base model's data (corpus, instruct chats) computes with the
  seven most common only; the others' operations come from the task's examples (and the warm-up's general chats,
  which, like the real mix's math rows, draw from every event), so each size of training set teaches more of them.

Everything is drawn from the caller's `random.Random`, so the world's seed still fixes every byte.
"""

from __future__ import annotations

import random

from . import world as W

# The events a chain is made of: (operation, present, past), most frequent first; the i-th is drawn with weight
# 1 / (i + 1) (Zipf). Only the KNOWN head is in the base model's data (the pretraining corpus and the instruct
# chats): every other event's arithmetic is learnt from the task's examples or the warm-up's general chats, the
# long tail that makes accuracy rise with the training-set size. The tail never says "more": the verb alone
# tells its operation. A question never repeats an event, so each step's anchor (the previous event) is unique in it.
EVENTS: tuple[tuple[str, str, str], ...] = (
    ("+", "finds {n} more", "found {n} more"), ("-", "gives away {n}", "gave away {n}"),
    ("+", "gets {n} more", "got {n} more"), ("-", "loses {n}", "lost {n}"),
    ("+", "buys {n} more", "bought {n} more"), ("-", "gives {n} to a friend", "gave {n} to a friend"),
    ("-", "sells {n}", "sold {n}"),
    ("+", "wins {n}", "won {n}"), ("-", "eats {n}", "ate {n}"), ("+", "picks {n}", "picked {n}"),
    ("-", "drops {n}", "dropped {n}"), ("+", "earns {n}", "earned {n}"), ("-", "breaks {n}", "broke {n}"),
    ("+", "collects {n}", "collected {n}"), ("-", "spends {n}", "spent {n}"), ("+", "receives {n}", "received {n}"),
    ("-", "lends {n}", "lent {n}"), ("+", "catches {n}", "caught {n}"), ("-", "donates {n}", "donated {n}"),
    ("+", "bakes {n}", "baked {n}"), ("-", "throws out {n}", "threw out {n}"), ("+", "saves {n}", "saved {n}"),
    ("-", "mails {n}", "mailed {n}"), ("+", "borrows {n}", "borrowed {n}"), ("-", "hides {n}", "hid {n}"),
    ("+", "sews {n}", "sewed {n}"), ("-", "trades {n}", "traded {n}"), ("+", "grows {n}", "grew {n}"),
    ("-", "burns {n}", "burned {n}"), ("+", "gathers {n}", "gathered {n}"))
KNOWN = 7  # the head: world v5's first design had exactly these seven, all in its corpus
WEIGHTS = tuple(1.0 / (i + 1) for i in range(len(EVENTS)))
STEPS = (1, 2, 3)  # difficulties, drawn with equal probability
MULTIPLY_START = 0.25  # share of chains that start from containers of items ("3 bags with 4 eggs in each")

_FIRST = ("We know: ", "First: ", "To begin: ")
_THEN = ("Then: ", "After that: ", "Next: ")
_FINAL = ("So {P} has {N}.", "{P} has {N}.", "That means {P} has {N}.")


def draw_event(rng: random.Random, known_only: bool = False) -> tuple[str, str, str]:
    """One event by its Zipf weight, from the KNOWN head only when `known_only` (the base model's data)."""
    k = KNOWN if known_only else len(EVENTS)
    return rng.choices(EVENTS[:k], WEIGHTS[:k])[0]


def problem(world: W.World, rng: random.Random, known_only: bool = False) -> W.Problem:
    """A chain of 1-3 steps with every value in 0..MAX_VALUE; `clauses[k]` is step k's verbatim span of the question.
    `known_only`: only the KNOWN events (the pretraining corpus's and the instruct stage's problems)."""
    n_steps = rng.choice(STEPS)
    while True:
        multiply = rng.random() < MULTIPLY_START
        if multiply:
            x, y = rng.randint(2, 5), rng.randint(2, 5)
            steps, value, events = [(x, "*", y, x * y)], x * y, []
            if value > W.MAX_VALUE:
                continue
        else:
            x = rng.randint(1, 12)
            steps, value, events = [], x, []
        used: set[str] = set()
        ok = True
        while len(steps) < n_steps:
            op, present, past = draw_event(rng, known_only)
            n = rng.randint(1, 10)
            result = W._apply(value, op, n)
            text = present.format(n=n)
            if not 0 <= result <= W.MAX_VALUE or text in used:
                ok = False
                break
            used.add(text)
            events.append((text, past.format(n=n)))
            steps.append((value, op, n, result))
            value = result
        if ok:
            break
    person, item = rng.choice(world.people), rng.choice(W.ITEMS)
    container = rng.choice(W.CONTAINERS)
    if multiply:
        start = f"{x} {container} with {y} {item[1]} in each"
        chain = [start] + [e for e, _ in events]
        question = f"{person.name} has " + ", then ".join(chain) + "."
        story = f"{person.name} had " + ", then ".join([start] + [p for _, p in events])
        clauses = [f"has {start}"] + [f"{chain[k - 1]}, then {chain[k]}" for k in range(1, len(chain))]
    else:
        start = W._plural(x, item)
        chain = [e for e, _ in events]
        question = f"{person.name} has {start} and " + ", then ".join(chain) + "."
        story = f"{person.name} had {start} and " + ", then ".join(p for _, p in events)
        clauses = [f"has {start} and {chain[0]}"] + [f"{chain[k - 1]}, then {chain[k]}" for k in range(1, len(chain))]
    left = steps[-1][1] == "-"
    question += f" How many {item[1]} does {person.name} have {'left' if left else 'now'}?"
    story += f", so {person.pron} had {W._plural(value, item)}{' left' if left else ''}."
    if rng.random() < 0.3:
        question, story = f"In {person.town}, " + question, f"In {person.town}, " + story
    return W.Problem(question, story, tuple(steps), person.name, item, tuple(clauses))


def equation(x: int, op: str, y: int, r: int) -> str:
    return f"{x} {op} {y} = {r}"


def worked_solution(rng: random.Random, p: W.Problem, result: int | None = None) -> str:
    """The corpus's prose solution: each step's quoted span and equation; `result` replaces the last result."""
    parts = []
    for k, (clause, (x, op, y, r)) in enumerate(zip(p.clauses, p.steps)):
        if k == len(p.steps) - 1 and result is not None:
            r = result
        lead = rng.choice(_FIRST) if k == 0 else rng.choice(_THEN)
        parts.append(f"{lead}{clause}: {equation(x, op, y, r)}.")
    final = p.answer if result is None else result
    parts.append(rng.choice(_FINAL).format(P=p.person, N=W._plural(final, p.item)))
    return " ".join(parts)


def task_step(i: int, clause: str, x: int, op: str, y: int, r: int) -> str:
    """One step in the tasks' convention (what fine-tuning teaches; the corpus never writes "Step k:")."""
    return f"Step {i}: {clause}: {equation(x, op, y, r)}.\n"


def _continue(p: W.Problem, k: int, value: int) -> tuple[str, int] | None:
    """Steps k+1.. of `p` recomputed from a (wrong) value at step k; None if a value leaves 0..MAX_VALUE."""
    out = ""
    for i in range(k + 1, len(p.steps)):
        _, op, y, _ = p.steps[i]
        r = W._apply(value, op, y)
        if not 0 <= r <= W.MAX_VALUE:
            return None
        out += task_step(i + 1, p.clauses[i], value, op, y, r)
        value = r
    return out, value


def math_row(rng: random.Random, p: W.Problem) -> dict:
    """A Math-Step-DPO row: a correct prefix of steps, then the next step right (chosen) or wrong (rejected)."""
    k = rng.randrange(len(p.steps))  # the step that is chosen or rejected
    lines = [task_step(i + 1, c, *s) for i, (c, s) in enumerate(zip(p.clauses, p.steps))]
    x, op, y, r = p.steps[k]
    wrong = W._wrong(rng, r, lambda v: _continue(p, k, v) is not None)
    rest, m = _continue(p, k, wrong)
    chosen, rejected = lines[k], task_step(k + 1, p.clauses[k], x, op, y, wrong)
    return {"dataset": rng.choice(("GSM_AnsAug", "GSM_Rephrased")), "prompt": p.question,
            "initial_reason_steps": "".join(lines[:k]), "chosen": chosen, "rejected": rejected,
            "full_chosen": "".join(lines[k:]) + f"The answer is: {p.answer}",
            "full_rejected": rejected + rest + f"The answer is: {m}", "answer": str(p.answer)}


def gsm8k_solution(p: W.Problem) -> str:
    """GSM8K's answer field: one line per step (span and equation), then '#### N'."""
    return "".join(f"{c}: {equation(*s)}\n" for c, s in zip(p.clauses, p.steps)) + f"#### {p.answer}"


def recall_doc(world: W.World, rng: random.Random) -> str:
    """Sentences with fresh numbers, then some of them restated: copying from the context is the only way to predict
    the second half, which is the skill every step of a v5 solution needs. The sentences take every form a question's
    events take, not only "X has N items" (r1 in docs/miniature/world-v5.md restated only those)."""
    lines: list[str] = []
    for p in rng.sample(world.people, rng.randint(3, 5)):
        item, n = rng.choice(W.ITEMS), rng.randint(0, W.MAX_VALUE)
        event = draw_event(rng)[1].format(n=rng.randint(1, 10))  # every event: copying reveals no operation
        form = rng.randrange(4)
        if form == 0:
            lines.append(f"{p.name} has {W._plural(n, item)}.")
        elif form == 1:
            lines.append(f"{p.name} {event}.")
        elif form == 2:
            lines.append(f"{p.name} has {rng.randint(2, 5)} {rng.choice(W.CONTAINERS)} with {rng.randint(2, 5)} "
                         f"{item[1]} in each.")
        else:
            lines.append(f"{p.name} has {W._plural(n, item)} and {event}.")
    # A shuffled subset (r2 in docs/miniature/world-v5.md). Repeating a run of consecutive sentences in order (r3)
    # copied less well still (copy_restate 44 against 58.5%).
    again = rng.sample(lines, rng.randint(2, len(lines)))
    lead = rng.choice(("Again: ", "To repeat: ", "In short: "))
    return " ".join(lines) + "\n" + lead + " ".join(again)
