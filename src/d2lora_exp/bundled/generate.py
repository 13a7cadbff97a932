"""Generate the bundled datasets: seeded, deterministic, pure standard library.

    python -m d2lora_exp.bundled.generate [--out DIR] [--seed 0]

writes, by default into ``d2lora_exp/bundled/data``:

* ``orpo_dpo_mix.jsonl``  - mlabonne/orpo-dpo-mix-40k schema: source, chosen, rejected, prompt, question
* ``math_step_dpo.jsonl`` - xinlai/Math-Step-DPO-10K schema: dataset, prompt, initial_reason_steps,
  chosen, rejected, full_chosen, full_rejected, answer
* ``gsm8k_test.jsonl``    - openai/gsm8k (main) schema: question, answer ("... #### N")
* ``econ_titles.csv``     - onurkeles/econ_paper_abstracts schema: title, abstract
* ``arc_easy_test.jsonl`` - ARC-Easy schema: id, question, choices {text, label}, answerKey

Every file draws from its own ``random.Random`` seeded from (seed, file name), so the output is a
function of the seed alone: byte-identical across runs and machines (fixed key order,
``ensure_ascii=False``, ``\\n`` line endings). The committed files are the output for seed 0; a test
regenerates them and compares bytes, so they cannot drift from this code.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import DATA_DIR

N_ORPO = 240
N_ORPO_TOXIC = 5
N_MATH = 1200
N_GSM8K = 64
N_ECON = 400
N_ARC = 64


def _rng(seed: int, name: str) -> random.Random:
    # str seeds hash with SHA-512 (not Python's randomised hash), so this is stable across processes.
    return random.Random(f"d2lora-bundled:{seed}:{name}")


def _jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


# ---------------------------------------------------------------------------------------------------
# Shared word lists
# ---------------------------------------------------------------------------------------------------

# (name, subject pronoun, object pronoun, possessive)
PEOPLE = [
    ("Maya", "she", "her", "her"), ("Liam", "he", "him", "his"), ("Sofia", "she", "her", "her"),
    ("Noah", "he", "him", "his"), ("Aisha", "she", "her", "her"), ("Mateo", "he", "him", "his"),
    ("Hana", "she", "her", "her"), ("Omar", "he", "him", "his"), ("Chloe", "she", "her", "her"),
    ("Ravi", "he", "him", "his"), ("Elena", "she", "her", "her"), ("Kofi", "he", "him", "his"),
    ("Grace", "she", "her", "her"), ("Jonas", "he", "him", "his"), ("Priya", "she", "her", "her"),
    ("Diego", "he", "him", "his"), ("Lena", "she", "her", "her"), ("Samuel", "he", "him", "his"),
    ("Yuki", "she", "her", "her"), ("Ethan", "he", "him", "his"), ("Zara", "she", "her", "her"),
    ("Lucas", "he", "him", "his"), ("Amara", "she", "her", "her"), ("Tariq", "he", "him", "his"),
    ("Nina", "she", "her", "her"), ("Felix", "he", "him", "his"), ("Rosa", "she", "her", "her"),
    ("Arjun", "he", "him", "his"), ("Ivy", "she", "her", "her"), ("Marcus", "he", "him", "his"),
    ("Leila", "she", "her", "her"), ("Owen", "he", "him", "his"),
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ---------------------------------------------------------------------------------------------------
# Math word problems (Math-Step-DPO rows and GSM8K test rows share these templates)
# ---------------------------------------------------------------------------------------------------

class _Invalid(Exception):
    """A computation that leaves the positive integers (after a slip): try another slip or draw."""


_OPS: dict[str, Callable[[int, int], int]] = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class _Calc:
    """Runs a template's solution step by step, optionally adding `delta` to the result of step `slip_at`.

    Later steps consume the slipped value, so a wrong step propagates to a wrong final answer the way
    a real arithmetic slip does.
    """

    def __init__(self, slip_at: int | None = None, delta: int = 0):
        self.slip_at, self.delta = slip_at, delta
        self.steps: list[tuple[str, int, str, int, int]] = []

    def __call__(self, text: str, a: int, sym: str, b: int) -> int:
        if sym == "/":
            if b <= 0 or a % b:
                raise _Invalid
            value = a // b
        else:
            value = _OPS[sym](a, b)
        if len(self.steps) == self.slip_at:
            value += self.delta
        if value < 1:  # every quantity in the templates is positive; a slip to 0 or below is no slip
            raise _Invalid
        self.steps.append((text, a, sym, b, value))
        return value

    def step_dpo_lines(self) -> list[str]:
        return [text.format(calc=f"{a} {sym} {b} = {v}") for text, a, sym, b, v in self.steps]

    def gsm8k_lines(self) -> list[str]:
        return [text.format(calc=f"{a}{sym}{b}=<<{a}{sym}{b}={v}>>{v}") for text, a, sym, b, v in self.steps]


# A template draws its numbers and words from rng and returns (problem text, solve), where
# solve(calc) replays the solution on a _Calc and returns the final answer. Step texts hold "{calc}".
Template = Callable[[random.Random], tuple[str, Callable[[_Calc], int]]]

SHOP_ITEMS = ["notebooks", "pens", "apples", "oranges", "candles", "cupcakes", "muffins", "toy cars",
              "bracelets", "comic books", "mugs", "plants", "socks", "pencils", "lemons", "puzzles"]
PACK_THINGS = ["stickers", "markers", "crayons", "beads", "balloons", "trading cards", "buttons", "erasers"]
VEHICLES = [("car", 30, 65), ("bus", 25, 50), ("truck", 30, 60), ("train", 40, 80), ("cyclist", 8, 16),
            ("boat", 10, 25)]
FOODS = ["cookies", "muffins", "brownies", "cupcakes", "pancakes", "dumplings"]
JOBS = [("knits", "knit", "scarves"), ("bakes", "bake", "loaves of bread"), ("packs", "pack", "boxes"),
        ("plants", "plant", "trees"), ("folds", "fold", "paper cranes"), ("repairs", "repair", "bikes"),
        ("paints", "paint", "pots"), ("sews", "sew", "bags")]
SAVINGS_GOALS = ["bike", "video game", "pair of shoes", "guitar", "jacket", "telescope", "skateboard", "backpack"]
FRUITS = ["apples", "pears", "peaches", "plums", "oranges", "tomatoes", "lemons"]
GARDEN_PLANTS = ["tulips", "carrots", "sunflowers", "lettuces", "roses", "beans", "onions"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _people(rng: random.Random, k: int) -> list[tuple[str, str, str, str]]:
    return rng.sample(PEOPLE, k)


def t_change(rng):
    (n, s, _, _), (it1, it2) = _people(rng, 1)[0], rng.sample(SHOP_ITEMS, 2)
    a, p, b, q = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 6), rng.randint(1, 5)
    total = a * p + b * q
    bill = rng.choice([50, 100]) if total <= 40 else 100
    problem = (f"{n} buys {a} {it1} for ${p} each and {b} {it2} for ${q} each. {_cap(s)} pays with a ${bill} "
               f"bill. How much change does {s} get?")

    def solve(c):
        c1 = c(f"The {it1} cost {{calc}} dollars.", a, "*", p)
        c2 = c(f"The {it2} cost {{calc}} dollars.", b, "*", q)
        t = c("Together they cost {calc} dollars.", c1, "+", c2)
        return c(f"{_cap(s)} gets {{calc}} dollars in change.", bill, "-", t)
    return problem, solve


def t_packs(rng):
    (n, s, _, _), thing = _people(rng, 1)[0], rng.choice(PACK_THINGS)
    a, k, m = rng.randint(2, 6), rng.randint(4, 12), rng.randint(2, 15)
    u = rng.randint(1, a * k - 1)
    problem = (f"{n} buys {a} packs of {thing} with {k} {thing} in each pack. {_cap(s)} uses {u} {thing} for a "
               f"school project and then buys {m} more. How many {thing} does {s} have now?")

    def solve(c):
        t = c(f"{n} buys {{calc}} {thing}.", a, "*", k)
        left = c(f"After the project {s} has {{calc}} {thing} left.", t, "-", u)
        return c(f"With the new ones {s} has {{calc}} {thing}.", left, "+", m)
    return problem, solve


def t_ages(rng):
    (n1, _, _, _), (n2, _, _, _), (n3, _, _, _) = _people(rng, 3)
    a, k, y = rng.randint(3, 12), rng.randint(2, 4), rng.randint(2, 9)
    d = rng.randint(1, min(10, k * a - 1))
    word = {2: "twice", 3: "three times", 4: "four times"}[k]
    problem = (f"{n1} is {a} years old. {n2} is {word} as old as {n1}. {n3} is {d} years younger than {n2}. "
               f"How old will {n3} be in {y} years?")

    def solve(c):
        x2 = c(f"{n2} is {{calc}} years old.", k, "*", a)
        x3 = c(f"{n3} is {{calc}} years old.", x2, "-", d)
        return c(f"In {y} years {n3} will be {{calc}} years old.", x3, "+", y)
    return problem, solve


def t_age_sum(rng):
    (n1, _, _, _), (n2, _, _, _) = _people(rng, 2)
    a, d, y = rng.randint(4, 40), rng.randint(1, 15), rng.randint(2, 10)
    problem = (f"{n1} is {a} years old and {n2} is {d} years older. "
               f"What will the sum of their ages be in {y} years?")

    def solve(c):
        x2 = c(f"{n2} is {{calc}} years old.", a, "+", d)
        now = c("Their ages now add up to {calc} years.", a, "+", x2)
        grow = c(f"In {y} years each of them is {y} years older, which adds {{calc}} years.", 2, "*", y)
        return c("The sum of their ages will be {calc} years.", now, "+", grow)
    return problem, solve


def t_two_legs(rng):
    vehicle, lo, hi = rng.choice(VEHICLES)
    s1, s2 = rng.randint(lo, hi), rng.randint(lo, hi)
    h1, h2 = rng.randint(2, 5), rng.randint(1, 4)
    problem = (f"A {vehicle} travels at {s1} miles per hour for {h1} hours and then at {s2} miles per hour "
               f"for {h2} hours. How many miles does it travel in total?")

    def solve(c):
        d1 = c("In the first part it travels {calc} miles.", s1, "*", h1)
        d2 = c("In the second part it travels {calc} miles.", s2, "*", h2)
        return c("In total it travels {calc} miles.", d1, "+", d2)
    return problem, solve


def t_speed(rng):
    vehicle, lo, hi = rng.choice(VEHICLES)
    speed, h, h2 = rng.randint(lo, hi), rng.randint(2, 6), rng.randint(2, 9)
    d = speed * h
    problem = (f"A {vehicle} travels {d} miles in {h} hours. At the same speed, how many miles does it travel "
               f"in {h2} hours?")

    def solve(c):
        v = c("Its speed is {calc} miles per hour.", d, "/", h)
        return c(f"In {h2} hours it travels {{calc}} miles.", v, "*", h2)
    return problem, solve


def t_bake_share(rng):
    (n, s, _, _), food = _people(rng, 1)[0], rng.choice(FOODS)
    t, per, k = rng.randint(2, 4), rng.randint(6, 12), rng.randint(2, 6)
    options = [e for e in range(1, 8) if (t * per - e) % k == 0]
    if not options:
        raise _Invalid
    e = rng.choice(options)
    problem = (f"{n} bakes {t} trays of {per} {food}. {_cap(s)} eats {e} of them and shares the rest equally "
               f"among {k} friends. How many {food} does each friend get?")

    def solve(c):
        total = c(f"{n} bakes {{calc}} {food}.", t, "*", per)
        rest = c(f"After eating some, {{calc}} {food} are left.", total, "-", e)
        return c(f"Each friend gets {{calc}} {food}.", rest, "/", k)
    return problem, solve


def t_share(rng):
    (n, s, _, poss), thing = _people(rng, 1)[0], rng.choice(PACK_THINGS + FRUITS)
    k, each, g = rng.randint(2, 8), rng.randint(2, 12), rng.randint(1, 12)
    total = k * each + g
    relative = rng.choice(["brother", "sister", "cousin", "neighbour"])
    problem = (f"{n} has {total} {thing}. {_cap(s)} gives {g} to {poss} {relative} and shares the rest equally "
               f"among {k} friends. How many {thing} does each friend get?")

    def solve(c):
        rest = c(f"{n} has {{calc}} {thing} left to share.", total, "-", g)
        return c(f"Each friend gets {{calc}} {thing}.", rest, "/", k)
    return problem, solve


def t_work(rng):
    (n, s, _, _), (verb3, verb, units) = _people(rng, 1)[0], rng.choice(JOBS)
    r, h, d = rng.randint(2, 9), rng.randint(2, 8), rng.randint(2, 7)
    problem = (f"{n} {verb3} {r} {units} per hour. {_cap(s)} works {h} hours a day for {d} days. "
               f"How many {units} does {s} {verb} in total?")

    def solve(c):
        day = c(f"Each day {s} {verb3} {{calc}} {units}.", r, "*", h)
        return c(f"In {d} days {s} {verb3} {{calc}} {units}.", day, "*", d)
    return problem, solve


def t_work_earn(rng):
    (n, s, _, _), (verb3, _verb, units) = _people(rng, 1)[0], rng.choice(JOBS)
    r, h, d, p = rng.randint(2, 5), rng.randint(2, 6), rng.randint(2, 5), rng.randint(2, 9)
    problem = (f"{n} {verb3} {r} {units} per hour and works {h} hours a day for {d} days. {_cap(s)} sells "
               f"each one for ${p}. How much money does {s} earn?")

    def solve(c):
        day = c(f"Each day {s} {verb3} {{calc}} {units}.", r, "*", h)
        made = c(f"In {d} days {s} {verb3} {{calc}} {units}.", day, "*", d)
        return c(f"{_cap(s)} earns {{calc}} dollars.", made, "*", p)
    return problem, solve


def t_savings(rng):
    (n, s, _, _), goal = _people(rng, 1)[0], rng.choice(SAVINGS_GOALS)
    w, weeks = rng.randint(3, 20), rng.randint(3, 12)
    cost = rng.randint(5, w * weeks - 1)
    problem = (f"{n} saves ${w} each week for {weeks} weeks. Then {s} spends ${cost} on a {goal}. "
               f"How much money does {s} have left?")

    def solve(c):
        saved = c(f"{n} saves {{calc}} dollars.", w, "*", weeks)
        return c(f"{_cap(s)} has {{calc}} dollars left.", saved, "-", cost)
    return problem, solve


def t_savings_gift(rng):
    (n, s, _, poss), goal = _people(rng, 1)[0], rng.choice(SAVINGS_GOALS)
    w, weeks, gift = rng.randint(3, 15), rng.randint(3, 10), rng.choice([5, 10, 15, 20, 25, 30])
    giver = rng.choice(["grandmother", "uncle", "aunt", "grandfather"])
    cost = rng.randint(5, w * weeks + gift - 1)
    problem = (f"{n} saves ${w} each week for {weeks} weeks, and {poss} {giver} gives {_obj(s)} ${gift}. "
               f"{_cap(s)} buys a {goal} for ${cost}. How much money does {s} have left?")

    def solve(c):
        saved = c(f"{n} saves {{calc}} dollars.", w, "*", weeks)
        have = c(f"With the gift {s} has {{calc}} dollars.", saved, "+", gift)
        return c(f"After buying the {goal}, {s} has {{calc}} dollars left.", have, "-", cost)
    return problem, solve


def _obj(subject: str) -> str:
    return {"she": "her", "he": "him"}[subject]


def t_farmer(rng):
    fruit = rng.choice(FRUITS)
    b, e, k = rng.randint(3, 9), rng.randint(8, 20), rng.randint(3, 8)
    options = [r for r in range(1, 12) if (b * e - r) % k == 0]
    if not options:
        raise _Invalid
    r = rng.choice(options)
    problem = (f"A farmer picks {b} baskets with {e} {fruit} each. {r} of the {fruit} are bruised and thrown "
               f"away. She packs the rest into bags of {k}. How many bags does she fill?")

    def solve(c):
        total = c(f"She picks {{calc}} {fruit}.", b, "*", e)
        good = c(f"{{calc}} {fruit} are good.", total, "-", r)
        return c("She fills {calc} bags.", good, "/", k)
    return problem, solve


def t_reading(rng):
    (n, s, _, _) = _people(rng, 1)[0]
    r, d = rng.randint(5, 30), rng.randint(2, 9)
    pages = r * d + rng.randint(10, 150)
    problem = (f"A book has {pages} pages. {n} reads {r} pages every day for {d} days. "
               f"How many pages does {s} still have to read?")

    def solve(c):
        read = c(f"{_cap(s)} reads {{calc}} pages.", r, "*", d)
        return c(f"{_cap(s)} still has {{calc}} pages to read.", pages, "-", read)
    return problem, solve


def t_teams(rng):
    classes, size, k = rng.randint(2, 6), rng.randint(18, 30), rng.randint(3, 6)
    options = [a for a in range(1, 10) if (classes * size - a) % k == 0]
    if not options:
        raise _Invalid
    a, day = rng.choice(options), rng.choice(DAYS)
    problem = (f"A school has {classes} classes with {size} students each. On {day}, {a} students are absent. "
               f"The students who came are split into teams of {k}. How many teams are there?")

    def solve(c):
        total = c("The school has {calc} students.", classes, "*", size)
        came = c(f"On {day}, {{calc}} students came.", total, "-", a)
        return c("There are {calc} teams.", came, "/", k)
    return problem, solve


def t_garden(rng):
    (n, s, _, _), plant = _people(rng, 1)[0], rng.choice(GARDEN_PLANTS)
    rows, per = rng.randint(3, 9), rng.randint(4, 15)
    lost = rng.randint(1, min(20, rows * per - 1))
    problem = (f"{n} plants {rows} rows of {plant} with {per} {plant} in each row. {lost} of them do not grow. "
               f"How many {plant} grow?")

    def solve(c):
        planted = c(f"{_cap(s)} plants {{calc}} {plant}.", rows, "*", per)
        return c(f"{{calc}} {plant} grow.", planted, "-", lost)
    return problem, solve


# MATH-flavoured (competition-style phrasing, same small arithmetic); training rows only.

def m_expression(rng):
    a, b, c_, d = (rng.randint(2, 15) for _ in range(4))
    problem = f"What is the value of ${a} \\times {b} + {c_} \\times {d}$?"

    def solve(c):
        p1 = c("First, {calc}.", a, "*", b)
        p2 = c("Next, {calc}.", c_, "*", d)
        return c("Adding the products gives {calc}.", p1, "+", p2)
    return problem, solve


def m_linear(rng):
    a, x, k = rng.randint(2, 30), rng.randint(1, 30), rng.randint(2, 9)
    b = x + a
    problem = f"If $x + {a} = {b}$, what is the value of ${k}x$?"

    def solve(c):
        xv = c(f"Subtract {a} from both sides: x = {{calc}}.", b, "-", a)
        return c(f"Then {k}x = {{calc}}.", k, "*", xv)
    return problem, solve


def m_linear2(rng):
    k, x, cst, e = rng.randint(2, 9), rng.randint(1, 15), rng.randint(1, 20), rng.randint(1, 20)
    d = k * x - cst
    if d <= 0:
        raise _Invalid
    problem = f"If ${k}x - {cst} = {d}$, what is $x + {e}$?"

    def solve(c):
        kx = c(f"Add {cst} to both sides: {k}x = {{calc}}.", d, "+", cst)
        xv = c(f"Divide both sides by {k}: x = {{calc}}.", kx, "/", k)
        return c(f"So x + {e} = {{calc}}.", xv, "+", e)
    return problem, solve


def m_rectangle(rng):
    length, width = rng.randint(3, 20), rng.randint(2, 15)
    problem = (f"A rectangle has length {length} and width {width}. "
               f"What is the sum of its area and its perimeter?")

    def solve(c):
        area = c("The area is {calc}.", length, "*", width)
        half = c("Length plus width is {calc}.", length, "+", width)
        per = c("The perimeter is {calc}.", 2, "*", half)
        return c("The sum of the area and the perimeter is {calc}.", area, "+", per)
    return problem, solve


WORD_TEMPLATES: list[Template] = [t_change, t_packs, t_ages, t_age_sum, t_two_legs, t_speed, t_bake_share,
                                  t_share, t_work, t_work_earn, t_savings, t_savings_gift, t_farmer, t_reading,
                                  t_teams, t_garden]
MATH_TEMPLATES: list[Template] = [m_expression, m_linear, m_linear2, m_rectangle]
MATH_SHARE = 0.2  # fraction of Math-Step-DPO rows labelled "MATH" (from MATH_TEMPLATES)

STEP_DPO_PROMPT = "### Instruction:\n{problem}\n\n### Response: Let's think step by step."


def _draw(rng: random.Random, templates: Sequence[Template]):
    while True:
        try:
            problem, solve = rng.choice(templates)(rng)
        except _Invalid:
            continue
        return problem, solve


def _slip(rng: random.Random, solve, n_steps: int, answer: int) -> tuple[int, _Calc, int]:
    """A wrong continuation: one step off by a small amount, the rest computed from it."""
    k = rng.randrange(n_steps)
    small = [1, -1, 2, -2, 10, -10]
    rest = [d for d in range(-12, 13) if d and d not in small]
    rng.shuffle(small)
    rng.shuffle(rest)
    for delta in small + rest:
        calc = _Calc(k, delta)
        try:
            wrong = solve(calc)
        except _Invalid:
            continue
        if wrong != answer:
            return k, calc, wrong
    raise _Invalid


def _step_dpo_row(rng: random.Random, dataset: str, problem: str, solve) -> dict:
    right = _Calc()
    answer = solve(right)
    k, wrong_calc, wrong = _slip(rng, solve, len(right.steps), answer)
    good = [f"Step {i + 1}: {line}\n" for i, line in enumerate(right.step_dpo_lines())]
    bad = [f"Step {i + 1}: {line}\n" for i, line in enumerate(wrong_calc.step_dpo_lines())]
    return {
        "dataset": dataset,
        "prompt": STEP_DPO_PROMPT.format(problem=problem),
        "initial_reason_steps": "".join(good[:k]),
        "chosen": good[k],
        "rejected": bad[k],
        "full_chosen": "".join(good[k:]) + f"The answer is: {answer}",
        "full_rejected": "".join(bad[k:]) + f"The answer is: {wrong}",
        "answer": str(answer),
    }


def _gsm8k_row(problem: str, solve) -> dict:
    calc = _Calc()
    answer = solve(calc)
    return {"question": problem, "answer": "\n".join(calc.gsm8k_lines()) + f"\n#### {answer}"}


def build_math(seed: int) -> tuple[list[dict], list[dict]]:
    """(Math-Step-DPO rows, GSM8K test rows) with disjoint problems."""
    rng = _rng(seed, "math")
    seen: set[str] = set()
    gsm8k: list[dict] = []
    while len(gsm8k) < N_GSM8K:
        problem, solve = _draw(rng, WORD_TEMPLATES)
        if problem not in seen:
            seen.add(problem)
            gsm8k.append(_gsm8k_row(problem, solve))
    test_problems = {row["question"] for row in gsm8k}
    steps: list[dict] = []
    train_problems: set[str] = set()
    while len(steps) < N_MATH:
        is_math = rng.random() < MATH_SHARE
        problem, solve = _draw(rng, MATH_TEMPLATES if is_math else WORD_TEMPLATES)
        if problem in seen:
            continue
        try:
            row = _step_dpo_row(rng, "MATH" if is_math else "gsm8k", problem, solve)
        except _Invalid:
            continue
        seen.add(problem)
        train_problems.add(problem)
        steps.append(row)
    assert not test_problems & train_problems, "GSM8K test problems leak into the training rows"
    assert all(row["question"] not in s["prompt"] for row in gsm8k for s in steps), "GSM8K test leaks into training"
    return steps, gsm8k


# ---------------------------------------------------------------------------------------------------
# orpo-dpo-mix-40k: general instructions, good vs bad replies
# ---------------------------------------------------------------------------------------------------

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
            ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Egypt", "Cairo"), ("Germany", "Berlin"),
            ("India", "New Delhi"), ("Italy", "Rome"), ("Mexico", "Mexico City"), ("Norway", "Oslo"),
            ("Peru", "Lima"), ("Spain", "Madrid"), ("Sweden", "Stockholm"), ("Thailand", "Bangkok"),
            ("Turkey", "Ankara"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Greece", "Athens"),
            ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Poland", "Warsaw"), ("Vietnam", "Hanoi"),
            ("Ghana", "Accra"), ("Morocco", "Rabat"), ("Austria", "Vienna"), ("Finland", "Helsinki"),
            ("South Korea", "Seoul"), ("New Zealand", "Wellington")]

# (question, good answer, wrong answer)
FACTS = [
    ("How many days are there in a leap year?", "A leap year has 366 days.", "A leap year has 365 days."),
    ("At what temperature does water boil at sea level?",
     "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit).", "Water boils at 50 degrees Celsius."),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet because of the iron oxide on its surface.",
     "Jupiter is known as the Red Planet."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
     "The Atlantic Ocean is the largest ocean on Earth."),
    ("How many continents are there?", "There are seven continents: Africa, Antarctica, Asia, Australia, Europe, "
     "North America and South America.", "There are four continents."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air and use it in photosynthesis.",
     "Plants absorb helium from the air."),
    ("Who wrote 'Romeo and Juliet'?", "'Romeo and Juliet' was written by William Shakespeare.",
     "'Romeo and Juliet' was written by Charles Dickens."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius.",
     "Water freezes at 20 degrees Celsius."),
    ("How many legs does a spider have?", "A spider has eight legs.", "A spider has six legs."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", "The chemical symbol for gold is Go."),
    ("Which organ pumps blood around the body?", "The heart pumps blood around the body.",
     "The lungs pump blood around the body."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour.", "There are 100 minutes in an hour."),
    ("What is the tallest mountain in the world?", "Mount Everest is the tallest mountain above sea level, at about "
     "8,849 metres.", "Mont Blanc is the tallest mountain in the world."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system.",
     "Mercury is the largest planet in our solar system."),
    ("How many sides does a hexagon have?", "A hexagon has six sides.", "A hexagon has eight sides."),
    ("What do bees make?", "Bees make honey and beeswax.", "Bees make milk."),
    ("Which is the closest star to Earth?", "The Sun is the closest star to Earth.",
     "The North Star is the closest star to Earth."),
    ("What is the main language spoken in Brazil?", "The main language spoken in Brazil is Portuguese.",
     "The main language spoken in Brazil is Spanish."),
    ("How many hours are in a day?", "There are 24 hours in a day.", "There are 12 hours in a day."),
    ("What is H2O commonly called?", "H2O is the chemical formula for water.", "H2O is the chemical formula for salt."),
    ("Which animal is the largest mammal?", "The blue whale is the largest mammal.", "The elephant is the largest mammal."),
    ("What is the opposite of 'ancient'?", "The opposite of 'ancient' is 'modern'.", "The opposite of 'ancient' is 'old'."),
    ("How many strings does a standard guitar have?", "A standard guitar has six strings.",
     "A standard guitar has four strings."),
    ("What shape has three sides?", "A triangle has three sides.", "A square has three sides."),
    ("In which continent is Egypt?", "Egypt is in Africa, with the Sinai Peninsula extending into Asia.",
     "Egypt is in South America."),
]

DEFINITIONS = [
    ("photosynthesis", "the process by which plants use sunlight, water and carbon dioxide to make sugar and oxygen"),
    ("democracy", "a system of government in which citizens choose their leaders by voting"),
    ("inflation", "a general rise in prices that reduces what a unit of money can buy"),
    ("gravity", "the force that pulls objects with mass towards each other"),
    ("an ecosystem", "a community of living things interacting with each other and their environment"),
    ("a metaphor", "a figure of speech that describes something by saying it is something else"),
    ("evaporation", "the change of a liquid into a gas, usually because of heat"),
    ("a budget", "a plan that sets out expected income and spending over a period"),
    ("a synonym", "a word that means the same or nearly the same as another word"),
    ("an algorithm", "a step-by-step set of instructions for solving a problem"),
    ("erosion", "the gradual wearing away of rock or soil by wind, water or ice"),
    ("a habitat", "the natural home of an animal or plant"),
    ("a verb", "a word that describes an action, state or occurrence"),
    ("a prime number", "a whole number greater than 1 whose only divisors are 1 and itself"),
    ("a volcano", "an opening in the Earth's crust through which lava, ash and gases escape"),
    ("a noun", "a word that names a person, place, thing or idea"),
    ("migration", "the seasonal movement of animals from one region to another"),
    ("a fraction", "a number that represents part of a whole, written as one number over another"),
    ("recycling", "turning waste materials into new products"),
    ("a mammal", "a warm-blooded animal that has hair and feeds its young with milk"),
    ("a thermometer", "an instrument for measuring temperature"),
    ("an adjective", "a word that describes a noun"),
    ("a glacier", "a large, slowly moving mass of ice on land"),
    ("a century", "a period of one hundred years"),
    ("friction", "the force that resists motion when two surfaces rub together"),
]

LIST_CATEGORIES = {
    "fruits": ["Apple", "Banana", "Mango", "Cherry", "Pear", "Grape", "Pineapple", "Orange"],
    "colours": ["Red", "Blue", "Green", "Yellow", "Purple", "Orange", "Black", "White"],
    "planets in our solar system": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
    "mammals": ["Dog", "Elephant", "Whale", "Bat", "Horse", "Lion", "Rabbit", "Dolphin"],
    "birds": ["Eagle", "Robin", "Penguin", "Owl", "Parrot", "Sparrow", "Swan", "Pelican"],
    "musical instruments": ["Piano", "Violin", "Guitar", "Flute", "Drums", "Trumpet", "Cello", "Harp"],
    "vegetables": ["Carrot", "Broccoli", "Spinach", "Potato", "Onion", "Pepper", "Cabbage", "Pea"],
    "European countries": ["France", "Germany", "Italy", "Spain", "Portugal", "Norway", "Poland", "Greece"],
    "sports": ["Football", "Tennis", "Basketball", "Swimming", "Cricket", "Rugby", "Volleyball", "Cycling"],
    "programming languages": ["Python", "Java", "C", "Rust", "JavaScript", "Go", "Ruby", "Haskell"],
}
NUMBER_WORDS = {3: "three", 4: "four", 5: "five"}

# (subject, base verb, 3rd-person present, past, object, place)
SUBJECTS = ["The old farmer", "My neighbour", "The young pilot", "Our teacher", "The baker", "The little girl",
            "The tired student", "The museum guide", "The fisherman", "The new manager"]
VERBS = [("feed", "feeds", "fed", "the hungry goats"), ("paint", "paints", "painted", "the wooden fence"),
         ("write", "writes", "wrote", "a long letter"), ("carry", "carries", "carried", "the heavy boxes"),
         ("bake", "bakes", "baked", "fresh bread"), ("read", "reads", "read", "the morning newspaper"),
         ("clean", "cleans", "cleaned", "the kitchen floor"), ("sing", "sings", "sang", "an old song"),
         ("build", "builds", "built", "a small boat"), ("water", "waters", "watered", "the tomato plants")]
PLACES = ["behind the barn", "every morning", "near the station", "after lunch", "in the garden", "at the weekend",
          "before dinner", "by the lake"]

# Long sentence parts with their short forms, for "summarise" rows.
SUM_TIMES = ["After weeks of careful planning", "Early on a cold Saturday morning", "Despite the heavy rain",
             "At the end of a long and busy season", "Following a lively public meeting",
             "Only a few days before the holidays"]
SUM_ACTORS = [("the members of the local gardening club", "The gardening club"),
              ("a group of students from the secondary school", "Students"),
              ("the volunteers of the town's animal shelter", "Shelter volunteers"),
              ("the small team of engineers at the water company", "Engineers"),
              ("several families from the neighbourhood", "Local families"),
              ("the city council and a number of local businesses", "The council and local businesses")]
SUM_ACTIONS = [("worked for hours to plant more than two hundred young trees", "planted trees"),
               ("collected dozens of bags of litter and plastic bottles", "collected litter"),
               ("repaired the old wooden bridge that had been closed for months", "repaired the bridge"),
               ("organised a market to raise money for new library books", "raised money for library books"),
               ("painted colourful murals on the walls of the empty building", "painted murals"),
               ("built a set of raised beds for growing vegetables", "built vegetable beds")]
SUM_PLACES = [("along the banks of the river that runs through the town", "by the river"),
              ("in the large park at the centre of the city", "in the city park"),
              ("next to the primary school on the hill", "next to the school"),
              ("on the quiet streets around the old harbour", "near the harbour")]

RUDE = ["That is a silly question. Look it up yourself.", "I am not going to waste my time on this.",
        "Why would you even ask that? Figure it out on your own.", "Ugh, obviously. Everyone knows this.",
        "No. Ask someone else.", "This is boring. Next question."]
OFF_TOPIC = ["I really enjoy watching clouds drift across the sky on a summer afternoon.",
             "Did you know that octopuses have three hearts? Anyway, I like pizza.",
             "My favourite colour is green, and I think trains are fascinating.",
             "Let me tell you about my weekend instead: I went hiking and saw a deer.",
             "The best way to cook pasta is in plenty of salted water.",
             "Penguins cannot fly, but they are excellent swimmers."]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a friendly and concise assistant.",
                  "You are a knowledgeable tutor. Answer clearly and correctly.",
                  "You are an AI assistant. Give short, accurate answers."]

ORPO_SOURCES = {
    "arith": ["orca_dpo_pairs", "distilabel-math-preference-dpo", "capybara"],
    "capital": ["truthy-dpo", "ultrafeedback", "orca_dpo_pairs"],
    "fact": ["truthy-dpo", "ultrafeedback", "capybara"],
    "define": ["ultrafeedback", "capybara"],
    "rewrite": ["ultrafeedback", "capybara", "orca_dpo_pairs"],
    "list": ["capybara", "ultrafeedback"],
    "summary": ["orca_dpo_pairs", "ultrafeedback", "capybara"],
    "sort": ["capybara", "orca_dpo_pairs"],
    "letters": ["capybara", "ultrafeedback"],
}


def _bad(rng: random.Random, wrong: str) -> str:
    """A rejected reply: mostly a wrong answer, otherwise rude or off-topic."""
    kind = rng.choices(["wrong", "rude", "off"], weights=[6, 2, 2])[0]
    return wrong if kind == "wrong" else rng.choice(RUDE if kind == "rude" else OFF_TOPIC)


def _off_by(rng: random.Random, value: int) -> int:
    return max(0, value + rng.choice([-3, -2, -1, 1, 2, 3, 10]))


def o_arith(rng):
    (n, s, _, _) = rng.choice(PEOPLE)
    kind = rng.randrange(5)
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    if kind == 0:
        q = f"A box holds {a} eggs. How many eggs are in {b} boxes?"
        v = a * b
        good = f"Each box holds {a} eggs, so {b} boxes hold {b} * {a} = {v} eggs."
        wrong = f"{b} boxes hold {_off_by(rng, v)} eggs."
    elif kind == 1:
        q = f"{n} has {a} marbles and finds {b} more. How many marbles does {s} have now?"
        v = a + b
        good = f"{n} now has {a} + {b} = {v} marbles."
        wrong = f"{n} now has {_off_by(rng, v)} marbles."
    elif kind == 2:
        a, b = a * 10 + b, rng.randint(2, 9)
        op = rng.choice(["+", "-", "*"])
        v = _OPS[op](a, b)
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        q = f"What is {a} {word} {b}?"
        good = f"{a} {op} {b} = {v}."
        wrong = f"{a} {op} {b} = {_off_by(rng, v)}."
    elif kind == 3:
        q = f"A ticket costs ${a}. How much do {b} tickets cost?"
        v = a * b
        good = f"{b} tickets cost {b} * ${a} = ${v}."
        wrong = f"{b} tickets cost ${_off_by(rng, v)}."
    else:
        total = a * b
        q = f"{n} shares {total} sweets equally among {b} friends. How many sweets does each friend get?"
        good = f"Each friend gets {total} / {b} = {a} sweets."
        wrong = f"Each friend gets {_off_by(rng, a)} sweets."
    return q, good, _bad(rng, wrong)


def o_capital(rng):
    country, city = rng.choice(CAPITALS)
    q = rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?"])
    other = rng.choice([c for _, c in CAPITALS if c != city])
    return q, f"The capital of {country} is {city}.", _bad(rng, f"The capital of {country} is {other}.")


def o_fact(rng):
    q, good, wrong = rng.choice(FACTS)
    return q, good, _bad(rng, wrong)


def o_define(rng):
    i = rng.randrange(len(DEFINITIONS))
    word, meaning = DEFINITIONS[i]
    bare = word.split(" ", 1)[-1] if word.startswith(("a ", "an ")) else word
    q = rng.choice([f"Give a short definition of {bare}.", f"What is {word}?", f"Define {bare} in one sentence."])
    other = DEFINITIONS[(i + rng.randint(1, len(DEFINITIONS) - 1)) % len(DEFINITIONS)][1]
    return q, f"{_cap(word)} is {meaning}.", _bad(rng, f"{_cap(word)} is {other}.")


def o_rewrite(rng):
    subj, (base, third, past, obj), place = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PLACES)
    sentence = f"{subj} {third} {obj} {place}."
    kind = rng.randrange(4)
    if kind == 0:
        q = f"Rewrite this sentence in the past tense: \"{sentence}\""
        good = f"{subj} {past} {obj} {place}."
        wrong = f"{subj} will {base} {obj} {place}."
    elif kind == 1:
        q = f"Turn this sentence into a yes/no question: \"{sentence}\""
        good = f"Does {subj[0].lower() + subj[1:]} {base} {obj} {place}?"
        wrong = sentence
    elif kind == 2:
        q = f"Rewrite this sentence as a negative sentence: \"{sentence}\""
        good = f"{subj} does not {base} {obj} {place}."
        wrong = f"{subj} always {third} {obj} {place}."
    else:
        q = f"Rewrite this sentence in capital letters: \"{sentence}\""
        good = sentence.upper()
        wrong = sentence.lower()
    return q, good, _bad(rng, wrong)


def o_list(rng):
    names = list(LIST_CATEGORIES)
    cat = rng.choice(names)
    k = rng.choice([3, 4, 5])
    q = rng.choice([f"List {NUMBER_WORDS[k]} {cat}.", f"Name {NUMBER_WORDS[k]} {cat}."])
    items = rng.sample(LIST_CATEGORIES[cat], k)
    good = f"Here are {NUMBER_WORDS[k]} {cat}:\n" + "\n".join(f"{i + 1}. {x}" for i, x in enumerate(items))
    other = rng.choice([c for c in names if c != cat])
    wrong_items = rng.sample(LIST_CATEGORIES[other], k)
    wrong = f"Here are {NUMBER_WORDS[k]} {cat}:\n" + "\n".join(f"{i + 1}. {x}" for i, x in enumerate(wrong_items))
    return q, good, _bad(rng, wrong)


def o_summary(rng):
    time = rng.choice(SUM_TIMES)
    (actor, actor_s), (action, action_s), (place, place_s) = (rng.choice(SUM_ACTORS), rng.choice(SUM_ACTIONS),
                                                              rng.choice(SUM_PLACES))
    sentence = f"{time}, {actor} {action} {place}."
    q = rng.choice([f"Summarise this sentence in a few words: \"{sentence}\"",
                    f"Give a short summary of the following sentence: \"{sentence}\""])
    good = f"{actor_s} {action_s} {place_s}."
    other_actor = rng.choice([a for a in SUM_ACTORS if a[1] != actor_s])[1]
    other_action = rng.choice([a for a in SUM_ACTIONS if a[1] != action_s])[1]
    wrong = f"{other_actor} {other_action}."
    return q, good, _bad(rng, wrong)


def o_sort(rng):
    nums = rng.sample(range(1, 100), rng.randint(4, 6))
    desc = rng.random() < 0.3
    order = "largest to smallest" if desc else "smallest to largest"
    q = f"Sort these numbers from {order}: {', '.join(map(str, nums))}."
    good = "Sorted from " + order + ": " + ", ".join(map(str, sorted(nums, reverse=desc))) + "."
    shuffled = nums[:]
    while shuffled == sorted(nums, reverse=desc):
        rng.shuffle(shuffled)
    wrong = "Sorted from " + order + ": " + ", ".join(map(str, shuffled)) + "."
    return q, good, _bad(rng, wrong)


def o_letters(rng):
    pool = [w for ws in LIST_CATEGORIES.values() for w in ws if w.isalpha()]
    word = rng.choice(pool).lower()
    q = f"How many letters are in the word \"{word}\"?"
    good = f"The word \"{word}\" has {len(word)} letters: {'-'.join(word)}."
    wrong = f"The word \"{word}\" has {len(word) + rng.choice([-2, -1, 1, 2])} letters."
    return q, good, _bad(rng, wrong)


ORPO_KINDS: dict[str, Callable] = {"arith": o_arith, "capital": o_capital, "fact": o_fact, "define": o_define,
                                   "rewrite": o_rewrite, "list": o_list, "summary": o_summary, "sort": o_sort,
                                   "letters": o_letters}
ORPO_WEIGHTS = {"arith": 5, "capital": 2, "fact": 2, "define": 2, "rewrite": 3, "list": 2, "summary": 3, "sort": 2,
                "letters": 1}


def _msg(role: str, content: str) -> dict:
    return {"content": content, "role": role}


def build_orpo(seed: int) -> list[dict]:
    rng = _rng(seed, "orpo")
    kinds = list(ORPO_KINDS)
    weights = [ORPO_WEIGHTS[k] for k in kinds]
    n_normal = N_ORPO - N_ORPO_TOXIC
    system_rows = set(rng.sample(range(n_normal), 10))
    multi_rows = set(rng.sample([i for i in range(n_normal) if i not in system_rows], 8))
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n_normal:
        i = len(rows)
        kind = rng.choices(kinds, weights=weights)[0]
        q, good, bad = ORPO_KINDS[kind](rng)
        if q in seen:
            continue
        seen.add(q)
        head: list[dict] = []
        if i in system_rows:
            head.append(_msg("system", rng.choice(SYSTEM_PROMPTS)))
        if i in multi_rows:
            # Two user turns: an earlier exchange, then the question the preference is about.
            q0, good0, _ = ORPO_KINDS[rng.choice(kinds)](rng)
            head += [_msg("user", q0), _msg("assistant", good0)]
            prompt = q0
        else:
            prompt = q
        head.append(_msg("user", q))
        rows.append({
            "source": rng.choice(ORPO_SOURCES[kind]),
            "chosen": head + [_msg("assistant", good)],
            "rejected": [dict(m) for m in head] + [_msg("assistant", bad)],
            "prompt": prompt,
            "question": prompt,
        })
    for j in range(N_ORPO_TOXIC):
        # Stand-ins for the toxic-dpo-v0.2 subset that loaders must drop; the content is harmless.
        q = f"[placeholder {j + 1}: a prompt from the toxic-dpo-v0.2 subset, not included here]"
        rows.append({
            "source": "toxic-dpo-v0.2",
            "chosen": [_msg("user", q), _msg("assistant", "[placeholder reply: rows from this source are dropped]")],
            "rejected": [_msg("user", q), _msg("assistant", "[placeholder refusal: rows from this source are dropped]")],
            "prompt": q,
            "question": q,
        })
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order]


# ---------------------------------------------------------------------------------------------------
# Econ paper abstracts and titles
# ---------------------------------------------------------------------------------------------------

# (phrase used in the abstract, title form); the phrases are grammatically singular ("X raises Y").
ECON_TOPICS = [
    ("a higher minimum wage", "Minimum Wages"), ("trade liberalisation", "Trade Liberalisation"),
    ("access to microfinance", "Microfinance"), ("remote work", "Remote Work"), ("a carbon tax", "Carbon Taxes"),
    ("monetary policy tightening", "Monetary Tightening"), ("immigration", "Immigration"),
    ("broadband expansion", "Broadband Expansion"), ("a conditional cash transfer programme", "Cash Transfers"),
    ("automation", "Automation"), ("public school funding", "School Funding"),
    ("mobile money adoption", "Mobile Money"), ("a housing subsidy", "Housing Subsidies"),
    ("unemployment insurance", "Unemployment Insurance"), ("foreign direct investment", "Foreign Direct Investment"),
    ("financial literacy training", "Financial Literacy"), ("import competition", "Import Competition"),
    ("land titling", "Land Titling"), ("a childcare subsidy", "Childcare Subsidies"),
    ("rural electrification", "Rural Electrification"), ("bank deregulation", "Bank Deregulation"),
    ("exchange rate volatility", "Exchange Rate Volatility"), ("paid parental leave", "Parental Leave"),
    ("a tariff reduction", "Tariff Cuts"), ("fuel subsidy reform", "Fuel Subsidy Reform"),
    ("a corporate tax cut", "Corporate Tax Cuts"), ("a credit supply shock", "Credit Supply"),
    ("public infrastructure investment", "Infrastructure Investment"),
]
ECON_OUTCOMES = [
    ("employment", "Employment"), ("household consumption", "Household Consumption"), ("wages", "Wages"),
    ("firm productivity", "Firm Productivity"), ("income inequality", "Income Inequality"),
    ("female labour force participation", "Female Labour Supply"), ("school enrolment", "School Enrolment"),
    ("small business growth", "Small Business Growth"), ("house prices", "House Prices"),
    ("household savings", "Household Savings"), ("entrepreneurship", "Entrepreneurship"),
    ("export performance", "Exports"), ("regional migration", "Regional Migration"),
    ("carbon emissions", "Carbon Emissions"), ("poverty", "Poverty"), ("innovation", "Innovation"),
    ("bank lending", "Bank Lending"), ("health outcomes", "Health Outcomes"),
    ("inflation expectations", "Inflation Expectations"), ("agricultural yields", "Agricultural Yields"),
]
ECON_SETTINGS = ["the United States", "India", "Brazil", "China", "Kenya", "Germany", "Mexico", "Indonesia",
                 "the European Union", "sub-Saharan Africa", "Vietnam", "Colombia", "the United Kingdom",
                 "South Africa", "Bangladesh", "Chile", "Turkey", "Japan", "Ethiopia", "Peru"]
ECON_METHODS = [("difference-in-differences", "Difference-in-Differences"),
                ("regression discontinuity", "Regression Discontinuity"),
                ("instrumental variables", "Instrumental Variables"), ("synthetic control", "Synthetic Control"),
                ("event study", "Event Study"), ("randomised controlled trial", "Experimental"),
                ("structural estimation", "Structural"), ("panel fixed effects", "Panel Data"),
                ("shift-share instrument", "Shift-Share"), ("machine learning", "Machine Learning")]
ECON_DATA = ["administrative tax records", "a household panel survey", "firm-level census data",
             "county-level employment data", "bank loan records", "satellite images of night lights",
             "matched employer-employee data", "customs transaction records", "a national labour force survey",
             "scanner data on retail prices", "district-level census data", "a new survey of small firms"]
ECON_GROUPS = ["low-income households", "young workers", "women", "small firms", "rural districts",
               "less educated workers", "first-time borrowers", "exporting firms", "urban households"]
ECON_MECHANISMS = ["higher labour demand", "reduced credit constraints", "changes in relative prices",
                   "reallocation across firms", "improved access to information", "lower transaction costs",
                   "shifts in household bargaining", "greater investment in skills"]
ECON_POLICIES = ["labour market policy", "the design of social protection", "climate policy",
                 "development policy", "financial regulation", "trade policy", "education policy",
                 "monetary policy communication"]

_SMALL = {"a", "an", "and", "of", "on", "in", "the", "for", "to", "from", "with"}


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _title_case(text: str) -> str:
    words = text.split(" ")
    return " ".join(w if (i and w in _SMALL) else w[:1].upper() + w[1:] for i, w in enumerate(words))


def _econ_row(rng: random.Random) -> dict:
    (topic, topic_t), (outcome, outcome_t) = rng.choice(ECON_TOPICS), rng.choice(ECON_OUTCOMES)
    setting, (method, method_t) = rng.choice(ECON_SETTINGS), rng.choice(ECON_METHODS)
    data, group, mech, policy = (rng.choice(ECON_DATA), rng.choice(ECON_GROUPS), rng.choice(ECON_MECHANISMS),
                                 rng.choice(ECON_POLICIES))
    pct = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25])
    direction = rng.choices(["raises", "reduces", "none"], weights=[4, 4, 2])[0]

    intro = rng.choice([
        f"This paper studies the effect of {topic} on {outcome} in {setting}.",
        f"We investigate how {topic} affects {outcome} in {setting}.",
        f"Using evidence from {setting}, we ask how {topic} shapes {outcome}.",
    ])
    design = rng.choice([
        f"Using {data} and {_a(method)} {method} design, we estimate the causal impact of {topic}.",
        f"We combine {data} with {_a(method)} {method} approach to identify the effect.",
        f"Our empirical strategy relies on {method} applied to {data}.",
    ])
    if direction == "none":
        finding = rng.choice([f"We find that {topic} has no statistically significant effect on {outcome}.",
                              f"We find no evidence that {topic} changes {outcome}, and we can rule out large effects."])
    else:
        finding = rng.choice([f"We find that {topic} {direction} {outcome} by about {pct} percent.",
                              f"Our estimates show that {topic} {direction} {outcome} by {pct} percent on average."])
    sentences = [intro, design, finding]
    if direction != "none" and rng.random() < 0.6:
        sentences.append(f"The effect is concentrated among {group} and operates mainly through {mech}.")
    if rng.random() < 0.6:
        sentences.append(rng.choice([f"These results have implications for {policy}.",
                                     f"Our findings inform the debate on {policy}."]))

    title = rng.choice([
        f"{topic_t} and {outcome_t}: Evidence from {_title_case(setting)}",
        f"The Effect of {topic_t} on {outcome_t} in {_title_case(setting)}",
        f"{outcome_t} and {topic_t}: {method_t} Evidence",
        f"Estimating the Impact of {topic_t} on {outcome_t}",
        f"{topic_t}, {outcome_t}, and {_title_case(mech)}" if direction != "none" else
        f"Revisiting {topic_t} and {outcome_t}: Evidence from {_title_case(setting)}",
    ])
    return {"title": title, "abstract": " ".join(sentences)}


def build_econ(seed: int) -> list[dict]:
    rng = _rng(seed, "econ")
    rows, titles = [], set()
    while len(rows) < N_ECON:
        row = _econ_row(rng)
        if row["title"] not in titles:
            titles.add(row["title"])
            rows.append(row)
    return rows


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] for c in columns])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# ARC-Easy: simple science multiple choice
# ---------------------------------------------------------------------------------------------------

# (question, correct, distractors)
ARC_FACTS = [
    ("Which part of a plant takes in water from the soil?", "roots", ["leaves", "flowers", "seeds"]),
    ("What is the main source of energy for life on Earth?", "the Sun", ["the Moon", "volcanoes", "the wind"]),
    ("At what temperature in degrees Celsius does pure water freeze?", "0", ["10", "50", "100"]),
    ("Which state of matter has a definite shape and a definite volume?", "solid", ["liquid", "gas", "steam"]),
    ("Which tool is used to measure temperature?", "a thermometer", ["a ruler", "a balance", "a stopwatch"]),
    ("Which tool is best for measuring the mass of a rock?", "a balance", ["a thermometer", "a ruler",
                                                                        "a graduated cylinder"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Earth", "Mars"]),
    ("What causes day and night on Earth?", "Earth spinning on its axis",
     ["Earth moving around the Sun", "the Moon moving around Earth", "clouds covering the Sun"]),
    ("Which of these is a renewable resource?", "trees", ["coal", "oil", "natural gas"]),
    ("Which force pulls objects toward the center of Earth?", "gravity", ["magnetism", "friction", "electricity"]),
    ("Which organ pumps blood through the body?", "the heart", ["the lungs", "the stomach", "the brain"]),
    ("Which gas do plants take in from the air to make food?", "carbon dioxide", ["oxygen", "helium", "hydrogen"]),
    ("Which gas do people need to breathe in to stay alive?", "oxygen", ["carbon dioxide", "helium", "neon"]),
    ("Which material is the best conductor of electricity?", "copper", ["wood", "rubber", "plastic"]),
    ("Which material is a good insulator of electricity?", "rubber", ["copper", "iron", "aluminum"]),
    ("A rolling ball slows down and stops on a carpet. Which force causes this?", "friction",
     ["gravity", "magnetism", "buoyancy"]),
    ("Which is a stage in the life cycle of a butterfly?", "caterpillar", ["tadpole", "puppy", "seedling"]),
    ("Why can we see the Moon at night?", "it reflects light from the Sun",
     ["it makes its own light", "it is made of ice", "it is closer than the stars"]),
    ("How many legs does an insect have?", "six", ["four", "eight", "ten"]),
    ("Which season comes after winter?", "spring", ["summer", "fall", "winter"]),
    ("What happens to liquid water when it is heated to its boiling point?", "it becomes a gas",
     ["it becomes a solid", "it disappears forever", "it becomes heavier"]),
    ("Which body part does a fish use to breathe?", "gills", ["fins", "scales", "tail"]),
    ("What do bees collect from flowers to make honey?", "nectar", ["roots", "bark", "soil"]),
    ("What is the natural satellite of Earth?", "the Moon", ["the Sun", "Mars", "a comet"]),
    ("On which layer of Earth do people live?", "the crust", ["the mantle", "the outer core", "the inner core"]),
    ("Which type of rock forms when lava cools and hardens?", "igneous", ["sedimentary", "metamorphic", "fossil"]),
    ("Which simple machine is a ramp?", "an inclined plane", ["a pulley", "a lever", "a wheel and axle"]),
    ("Which animal eats only plants?", "a cow", ["a lion", "a wolf", "a shark"]),
    ("Which sense organ is used to smell?", "the nose", ["the ears", "the eyes", "the skin"]),
    ("Which of these is a unit of length?", "meter", ["liter", "gram", "second"]),
    ("What do we call animals that eat both plants and animals?", "omnivores", ["herbivores", "carnivores",
                                                                               "producers"]),
    ("The Sun is an example of which object?", "a star", ["a planet", "a moon", "a comet"]),
    ("Which is the best way to save water at home?", "turn off the tap while brushing teeth",
     ["take longer showers", "water the lawn at noon", "leave a hose running"]),
    ("Which part of the body protects the brain?", "the skull", ["the ribs", "the spine", "the pelvis"]),
    ("What do seeds need to begin to grow?", "water and warmth", ["darkness and cold", "salt and sand",
                                                                 "wind and snow"]),
    ("Which change is a physical change?", "ice melting", ["wood burning", "iron rusting", "bread baking"]),
    ("Which object is attracted to a magnet?", "an iron nail", ["a glass marble", "a wooden spoon",
                                                                "a paper clip made of plastic"]),
    ("What does a plant make during photosynthesis?", "sugar and oxygen", ["salt and water", "soil and air",
                                                                           "rocks and minerals"]),
    ("Which weather instrument measures wind speed?", "an anemometer", ["a barometer", "a thermometer",
                                                                       "a rain gauge"]),
    ("Which of these is the hardest natural material?", "diamond", ["chalk", "talc", "gypsum"]),
    ("How long does it take Earth to orbit the Sun once?", "about one year", ["about one day", "about one week",
                                                                              "about one month"]),
    ("Where is most of the water on Earth's surface found?", "in the oceans",
     ["in lakes", "in rivers", "in glaciers"]),
    ("Which of these does a fire need in order to burn?", "oxygen", ["sand", "water", "ice"]),
    ("Which part of a plant makes seeds?", "the flower", ["the roots", "the stem", "the bark"]),
    ("In which direction does the Sun rise?", "the east", ["the west", "the north", "the south"]),
    ("Which words best describe a desert?", "very dry", ["very wet", "always frozen", "covered in trees"]),
    ("What happens to most metals when they are heated?", "they expand",
     ["they shrink", "they turn into gas", "they become magnetic"]),
    ("Which sense do people use to hear music?", "hearing", ["sight", "taste", "touch"]),
    ("Which tool would a student use to look at tiny cells?", "a microscope",
     ["a telescope", "a magnet", "a compass"]),
    ("Which tool helps a hiker find north?", "a compass", ["a scale", "a thermometer", "a microscope"]),
    ("What does a caterpillar become?", "a butterfly", ["a frog", "a spider", "a bird"]),
    ("What is the largest planet in our solar system?", "Jupiter", ["Earth", "Mars", "Mercury"]),
    ("Which organs do people use to breathe?", "the lungs", ["the heart", "the liver", "the kidneys"]),
    ("About how many days does it take the Moon to orbit Earth?", "about 27 days",
     ["about 1 day", "about 7 days", "about 365 days"]),
]

# Category questions: the answer is drawn from the first list, the distractors from the second.
ARC_ANIMALS = {
    "mammal": ["dog", "whale", "bat", "horse", "rabbit"],
    "bird": ["eagle", "penguin", "robin", "owl", "ostrich"],
    "insect": ["ant", "bee", "beetle", "grasshopper", "ladybug"],
    "fish": ["salmon", "trout", "shark", "tuna", "goldfish"],
    "reptile": ["snake", "lizard", "turtle", "crocodile"],
    "amphibian": ["frog", "toad", "salamander", "newt"],
}
ARC_CATEGORIES = [
    ("Which of these is a metal?", ["iron", "copper", "aluminum"], ["wood", "glass", "plastic", "rubber", "paper"]),
    ("Which of these is a source of renewable energy?", ["wind", "sunlight", "flowing water"],
     ["coal", "oil", "natural gas", "gasoline"]),
    ("Which of these is a gas at room temperature?", ["oxygen", "nitrogen", "helium"],
     ["iron", "water", "salt", "sand", "wood"]),
    ("Which of these is a planet?", ["Mars", "Venus", "Saturn"], ["the Moon", "the Sun", "Polaris", "a comet"]),
    ("Which of these is a living thing?", ["a mushroom", "a tree", "a worm"],
     ["a rock", "a cloud", "a river", "a stone wall"]),
    ("Which of these is a liquid at room temperature?", ["water", "milk", "juice"],
     ["ice", "steam", "sand", "wood", "air"]),
    ("Which of these is a producer in a food chain?", ["grass", "an oak tree", "algae"],
     ["a rabbit", "a hawk", "a fox", "a snake"]),
    ("Which of these animals has a backbone?", ["a dog", "a frog", "a snake"],
     ["a worm", "a jellyfish", "a snail", "a spider"]),
]
ARC_PREFIXES = ["Mercury", "MCAS_2004_5", "NYSEDREGENTS_2010_4", "ACTAAP_2013_5", "MDSA_2009_5", "TIMSS_2011_4",
                "VASoL_2008_3", "MEA_2014_5"]


def _arc_questions(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """Every candidate (question, answer, distractors); category questions carry at least four distractors."""
    out = [(q, a, list(d)) for q, a, d in ARC_FACTS]
    for group, members in ARC_ANIMALS.items():
        others = [x for g, xs in ARC_ANIMALS.items() if g != group for x in xs]
        article = "an" if group[0] in "aeiou" else "a"
        out.append((f"Which of these animals is {article} {group}?", rng.choice(members), rng.sample(others, 5)))
    for q, answers, distractors in ARC_CATEGORIES:
        out.append((q, rng.choice(answers), list(distractors)))
    return out


def build_arc(seed: int) -> list[dict]:
    rng = _rng(seed, "arc")
    pool = _arc_questions(rng)
    assert len({q for q, _, _ in pool}) == len(pool) >= N_ARC
    chosen = rng.sample(pool, N_ARC)
    wide = [i for i, (_, _, d) in enumerate(chosen) if len(d) >= 4]
    five = rng.sample(wide, 2)
    rest = [i for i in range(N_ARC) if i not in five]
    three = rng.sample(rest, 2)
    numeric = rng.sample([i for i in rest if i not in three], 3)  # ~4% of ARC-Easy uses labels "1".."4"
    rows, ids = [], set()
    for i, (q, answer, distractors) in enumerate(chosen):
        n_choices = 5 if i in five else 3 if i in three else 4
        options = [answer] + rng.sample(distractors, n_choices - 1)
        rng.shuffle(options)
        labels = [str(j + 1) for j in range(n_choices)] if i in numeric else [chr(65 + j) for j in range(n_choices)]
        while True:
            prefix = rng.choice(ARC_PREFIXES)
            rid = f"Mercury_{rng.randint(7000000, 7299999)}" if prefix == "Mercury" else f"{prefix}_{rng.randint(1, 40)}"
            if rid not in ids:
                ids.add(rid)
                break
        rows.append({"id": rid, "question": q, "choices": {"text": options, "label": labels},
                     "answerKey": labels[options.index(answer)]})
    return rows


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------

def build(seed: int = 0) -> dict[str, str]:
    """File name -> file text for every bundled dataset."""
    math_rows, gsm8k_rows = build_math(seed)
    return {
        "orpo_dpo_mix.jsonl": _jsonl(build_orpo(seed)),
        "math_step_dpo.jsonl": _jsonl(math_rows),
        "gsm8k_test.jsonl": _jsonl(gsm8k_rows),
        "econ_titles.csv": _csv(build_econ(seed), ["title", "abstract"]),
        "arc_easy_test.jsonl": _jsonl(build_arc(seed)),
    }


def write(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, text in build(seed).items():
        path = out_dir / name
        path.write_bytes(text.encode("utf-8"))
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m d2lora_exp.bundled.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output folder (default: {DATA_DIR})")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the committed files use 0)")
    args = parser.parse_args(argv)
    paths = write(args.out, args.seed)
    for name, path in paths.items():
        print(f"{path}: {count_rows(path)} rows, {path.stat().st_size:,} bytes")
    return 0


def count_rows(path: Path) -> int:
    """Data rows in a bundled file (JSON lines, or CSV records after the header)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return sum(1 for _ in csv.reader(f)) - 1
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())

if __name__ == "__main__":
    sys.exit(main())
