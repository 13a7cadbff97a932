"""A small synthetic world, its pretraining corpus, and task data in the real data sets' schemas.

Everything is drawn from `random.Random` with string-derived seeds, so a seed fixes every byte of
every file (string seeds hash with SHA-512 in CPython, independent of PYTHONHASHSEED).

Texts are kept short and the vocabulary small and regular: the model reading them is a ~1M-parameter
Llama with one token per byte (world v3; world v5's model reads words: tiny_model.train_word_tokenizer).
The corpus states the world's facts, arithmetic and word problems in plain prose; it never uses the
tasks' answer conventions ("Step 1:", "The answer is", "####"), which only the fine-tuning data teach.

The same generator writes the full worlds (`DEFAULT_SIZES`; conf/data/miniature_v5.yaml, the default, and
conf/data/miniature.yaml, world v3) and the smoke world the fast-dev preset and the tests use (world v3, a few hundred
rows a file, conf/data/smoke.yaml).

    python -m d2lora_exp.miniature.world --out DIR [--world 3|5] [--seed 0] [--size math_train=1200 ...]  # make data: v5
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..files import write_jsonl

# --------------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------------

N_TOWNS, N_REGIONS, N_RIVERS, N_ANIMALS = 40, 8, 14, 12
PRODUCTS = ("salt", "wool", "cheese", "glass", "rope", "honey", "paper", "tea", "bread", "pots")
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "brown", "grey")
LEGS = (2, 4, 6, 8, 10)
PEOPLE = (("Tara", "f"), ("Mia", "f"), ("Lena", "f"), ("Nora", "f"), ("Ada", "f"), ("Ivy", "f"), ("Zoe", "f"),
          ("Rosa", "f"), ("Ella", "f"), ("Lily", "f"), ("Maya", "f"), ("Anna", "f"), ("Ruth", "f"), ("Jade", "f"),
          ("Kira", "f"), ("Ben", "m"), ("Sam", "m"), ("Leo", "m"), ("Tom", "m"), ("Max", "m"), ("Omar", "m"),
          ("Ivan", "m"), ("Hugo", "m"), ("Finn", "m"), ("Theo", "m"), ("Adam", "m"), ("Eli", "m"), ("Noah", "m"),
          ("Jack", "m"), ("Raj", "m"))
# (singular, plural) of the things people count in stories and word problems.
ITEMS = (("shell", "shells"), ("apple", "apples"), ("coin", "coins"), ("stone", "stones"), ("card", "cards"),
         ("egg", "eggs"), ("bead", "beads"), ("book", "books"), ("cup", "cups"), ("pen", "pens"),
         ("marble", "marbles"), ("stamp", "stamps"))
CONTAINERS = ("bags", "boxes", "jars", "baskets")
WORDS = ("lamp", "tree", "door", "fish", "moon", "cake", "rain", "boat", "bird", "sand", "milk", "star", "rock",
         "leaf", "road", "wind", "ship", "bell", "coat", "seed", "hill", "kite", "nest", "ring", "song", "wall")

_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")


@dataclass(frozen=True)
class Town:
    name: str
    region: str
    river: str
    product: str
    bridges: int


@dataclass(frozen=True)
class Animal:
    name: str  # lower case, starts with a consonant ("a glim")
    colour: str
    legs: int


@dataclass(frozen=True)
class Person:
    name: str
    gender: str  # "f" or "m", for pronouns
    town: str
    age: int
    number: int  # favourite number
    likes: str  # plural item the person collects

    @property
    def pron(self) -> str:
        return "she" if self.gender == "f" else "he"

    @property
    def poss(self) -> str:
        return "her" if self.gender == "f" else "his"


@dataclass(frozen=True)
class Fact:
    """One fact: an ARC-style question, its answer, the attribute it belongs to, and the corpus sentences stating it."""

    kind: str  # town_region, town_river, town_product, town_bridges, animal_legs, animal_colour, person_town, person_age
    subject: str
    question: str
    answer: str
    sentences: tuple[str, ...]


def _made_up_name(rng: random.Random, taken: set[str], lo: int = 4, hi: int = 7) -> str:
    while True:
        n_syll = rng.choice((2, 2, 3))
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n_syll)) + rng.choice(_CODAS)
        if rng.random() < 0.25:
            name = rng.choice(_VOWELS) + name
        if lo <= len(name) <= hi and name not in taken and not any(name in t or t in name for t in taken):
            taken.add(name)
            return name


VERSIONS = (3, 5)  # 3: two-step problems (when data.build.world is absent); 5: chains of 1-3 steps quoting the question (chains.py)


class World:
    """Towns (with region, river, product, bridges), animals (colour, legs) and people (town, age, number).

    `version` picks the word-problem family and the corpus mix; the world itself (its entities and facts) is the
    same for every version of a seed."""

    def __init__(self, seed: int = 0, version: int = 3):
        if version not in VERSIONS:
            raise ValueError(f"unknown world version {version}; choose from {list(VERSIONS)}")
        self.seed, self.version = seed, version
        rng = random.Random(f"world-{seed}")
        taken = {w for w in WORDS} | {p.lower() for p, _ in PEOPLE} | set(PRODUCTS) | set(COLOURS)
        cap = lambda s: s[0].upper() + s[1:]
        self.regions = [cap(_made_up_name(rng, taken)) for _ in range(N_REGIONS)]
        self.rivers = [cap(_made_up_name(rng, taken)) for _ in range(N_RIVERS)]
        town_names = [cap(_made_up_name(rng, taken)) for _ in range(N_TOWNS)]
        self.towns = [Town(name, self.regions[i % N_REGIONS], rng.choice(self.rivers), rng.choice(PRODUCTS),
                           rng.randint(1, 9)) for i, name in enumerate(town_names)]
        animal_names = []
        while len(animal_names) < N_ANIMALS:
            name = _made_up_name(rng, taken, 4, 6)
            if name[0] in _VOWELS:
                taken.discard(name)
                continue
            animal_names.append(name)
        self.animals = [Animal(name, rng.choice(COLOURS), rng.choice(LEGS)) for name in animal_names]
        people = list(PEOPLE)
        rng.shuffle(people)
        self.people = [Person(name, g, rng.choice(town_names), rng.randint(10, 60), rng.randint(1, 20),
                              rng.choice(ITEMS)[1]) for name, g in people]
        self.town = {t.name: t for t in self.towns}
        self.animal = {a.name: a for a in self.animals}
        self.person = {p.name: p for p in self.people}

    def problem_key(self, question: str) -> str:
        """What makes two word problems the same one: from v5 on, a question with and without its town prefix (v3
        compares whole questions; changing that would change the data its results were measured on)."""
        return core(question) if self.version >= 5 else question

    # ---- facts --------------------------------------------------------------------------------------

    def facts(self) -> list[Fact]:
        """Every fact the corpus states, with the sentences that state it and an ARC-style question."""
        if getattr(self, "_facts", None) is None:
            self._facts = self._all_facts()
        return list(self._facts)

    def _all_facts(self) -> list[Fact]:
        out = []
        for t in self.towns:
            out.append(Fact("town_region", t.name, f"Which region is {t.name} in?", t.region,
                            _town_region(t)))
            out.append(Fact("town_river", t.name, f"Which river flows through {t.name}?", t.river, _town_river(t)))
            out.append(Fact("town_product", t.name, f"What is {t.name} known for?", t.product, _town_product(t)))
            out.append(Fact("town_bridges", t.name, f"How many bridges does {t.name} have?", str(t.bridges),
                            _town_bridges(t)))
        for a in self.animals:
            out.append(Fact("animal_legs", a.name, f"How many legs does a {a.name} have?", str(a.legs), _animal_legs(a)))
            out.append(Fact("animal_colour", a.name, f"What colour is a {a.name}?", a.colour, _animal_colour(a)))
        for p in self.people:
            out.append(Fact("person_town", p.name, f"Where does {p.name} live?", p.town, _person_town(p)))
            out.append(Fact("person_age", p.name, f"How old is {p.name}?", str(p.age), _person_age(p)))
        return out

    def values(self, kind: str) -> list[str]:
        """All values an attribute takes (ARC distractors come from these)."""
        return {
            "town_region": list(self.regions), "town_river": list(self.rivers), "town_product": list(PRODUCTS),
            "town_bridges": [str(n) for n in range(1, 10)], "animal_legs": [str(n) for n in LEGS],
            "animal_colour": list(COLOURS), "person_town": [t.name for t in self.towns],
            "person_age": [str(n) for n in range(10, 61)],
        }[kind]


def _plural(n: int, item: tuple[str, str]) -> str:
    return f"{n} {item[0] if n == 1 else item[1]}"


def _bridges(n: int) -> str:
    return "1 bridge" if n == 1 else f"{n} bridges"


# Fact paraphrases. Each fact's first sentence is its canonical form.
def _town_region(t: Town) -> tuple[str, ...]:
    return (f"{t.name} is a town in the {t.region} region.", f"The town of {t.name} lies in {t.region}.",
            f"{t.name} is in the {t.region} region.")


def _town_river(t: Town) -> tuple[str, ...]:
    return (f"The river of {t.name} is the {t.river}.", f"The {t.river} river flows through {t.name}.",
            f"{t.name} stands on the {t.river} river.")


def _town_product(t: Town) -> tuple[str, ...]:
    return (f"{t.name} is known for its {t.product}.", f"The main product of {t.name} is {t.product}.",
            f"People in {t.name} make {t.product}.")


def _town_bridges(t: Town) -> tuple[str, ...]:
    return (f"{t.name} has {_bridges(t.bridges)}.",
            f"There {'is' if t.bridges == 1 else 'are'} {_bridges(t.bridges)} in {t.name}.",
            f"You can cross {_bridges(t.bridges)} in {t.name}.")


def _animal_legs(a: Animal) -> tuple[str, ...]:
    return (f"A {a.name} has {a.legs} legs.", f"The {a.name} walks on {a.legs} legs.",
            f"Every {a.name} has {a.legs} legs.")


def _animal_colour(a: Animal) -> tuple[str, ...]:
    return (f"A {a.name} is {a.colour}.", f"The {a.name} is a {a.colour} animal.", f"Every {a.name} is {a.colour}.")


def _person_town(p: Person) -> tuple[str, ...]:
    return (f"{p.name} lives in {p.town}.", f"{p.name} lives in {p.town} and is {p.age} years old.",
            f"{p.name} comes from {p.town}.")


def _person_age(p: Person) -> tuple[str, ...]:
    return (f"{p.name} is {p.age} years old.", f"{p.name} lives in {p.town} and is {p.age} years old.",
            f"{p.name} is {p.age}.")


# --------------------------------------------------------------------------------------------------
# Arithmetic and word problems
# --------------------------------------------------------------------------------------------------

_SYM = {"+": "plus", "-": "minus", "*": "times"}


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


# Word problems keep every value in 0..MAX_VALUE and the corpus's arithmetic states every fact they need:
# sums up to MAX_VALUE, differences of numbers up to MAX_VALUE, products of 0..6. World v2 used values up
# to 40 but stated sums of operands up to 20 only, and its model could not add (7 + 5 -> 22); a first v3
# draft stated every sum up to 40 and still could not (27 + 9 -> 28). Smaller numbers are a table the
# 0.84M-parameter model can learn in its 12-minute pretraining.
MAX_VALUE = 20


def _arith(rng: random.Random) -> tuple[int, str, int, int]:
    op = rng.choice("++--*")
    if op == "*":
        a, b = rng.randint(0, 6), rng.randint(0, 6)
    elif op == "+":
        total = rng.randint(0, MAX_VALUE)
        a = rng.randint(0, total)
        b = total - a
    else:
        a = rng.randint(0, MAX_VALUE)
        b = rng.randint(0, a)
    return a, op, b, _apply(a, op, b)


# Two-step problem patterns: (op1, op2, present-tense prompt, past-tense story). Patterns with op1 "*"
# start from `a` containers of `b` items each.
_PATTERNS = (
    ("+", "-", "{P} has {A}. {Pr} finds {b} more and gives away {c}. How many {I} does {P} have now?",
     "{P} had {A}. {Pr} found {b} more and gave away {c}, so {pr} had {N} left."),
    ("-", "+", "{P} has {A}. {Pr} gives away {b} and then gets {c} more. How many {I} does {P} have now?",
     "{P} had {A}. {Pr} gave away {b} and then got {c} more, so {pr} had {N}."),
    ("+", "+", "{P} has {A}. {Pr} finds {b} more, and then {c} more. How many {I} does {P} have now?",
     "{P} had {A}. {Pr} found {b} more, and then {c} more, so {pr} had {N}."),
    ("-", "-", "{P} has {A}. {Pr} gives {b} to a friend and loses {c}. How many {I} does {P} have left?",
     "{P} had {A}. {Pr} gave {b} to a friend and lost {c}, so {pr} had {N} left."),
    ("*", "+", "{P} has {a} {C} with {b} {I} in each. {Pr} finds {c} more {I}. How many {I} does {P} have?",
     "{P} had {a} {C} with {b} {I} in each and found {c} more, so {pr} had {N}."),
    ("*", "-", "{P} has {a} {C} with {b} {I} in each. {Pr} gives away {c}. How many {I} does {P} have left?",
     "{P} had {a} {C} with {b} {I} in each and gave away {c}, so {pr} had {N} left."),
)


@dataclass(frozen=True)
class Problem:
    question: str
    story: str  # the same problem told in the past tense with its result, for the corpus
    steps: tuple[tuple[int, str, int, int], ...]  # (x, op, y, result)
    person: str = ""
    item: tuple[str, str] = ("", "")  # (singular, plural) of what is counted
    clauses: tuple[str, ...] = ()  # world v5: each step's verbatim span of the question

    @property
    def answer(self) -> int:
        return self.steps[-1][3]


def _problem(world: World, rng: random.Random, known_only: bool = False) -> Problem:
    """A word problem of the world's family; `known_only` (world v5): only the events the base model's data may hold
    (chains.KNOWN), for the pretraining corpus and the instruct chats."""
    if world.version >= 5:
        from . import chains

        return chains.problem(world, rng, known_only)
    while True:
        op1, op2, q_tpl, s_tpl = rng.choice(_PATTERNS)
        if op1 == "*":
            a, b = rng.randint(2, 5), rng.randint(2, 5)
        else:
            a, b = rng.randint(1, 10), rng.randint(1, 10)
        c = rng.randint(1, 10)
        r1 = _apply(a, op1, b)
        r2 = _apply(r1, op2, c)
        if not (0 <= r1 <= MAX_VALUE and 0 <= r2 <= MAX_VALUE):
            continue
        break
    person = rng.choice(world.people)
    item = rng.choice(ITEMS)
    fields = dict(P=person.name, Pr=person.pron.capitalize(), pr=person.pron, A=_plural(a, item), a=a, b=b, c=c,
                  I=item[1], C=rng.choice(CONTAINERS), N=_plural(r2, item))
    question, story = q_tpl.format(**fields), s_tpl.format(**fields)
    if rng.random() < 0.3:
        question, story = f"In {person.town}, " + question, f"In {person.town}, " + story
    return Problem(question, story, ((a, op1, b, r1), (r1, op2, c, r2)), person.name, item)


# Worked solutions in prose (world v3): the corpus shows how a problem's numbers combine, step by step,
# in words and "=" lines, but never in the tasks' conventions ("Step k:", "The answer is", "####").
_SAY = {"+": ("{x} plus {y} is {r}", "{x} and {y} more make {r}", "{x} + {y} = {r}"),
        "-": ("{x} minus {y} is {r}", "{x} take away {y} leaves {r}", "{x} - {y} = {r}"),
        "*": ("{x} times {y} is {r}", "{x} groups of {y} make {r}", "{x} * {y} = {r}")}
_WORKED = ("First, {s1}. Then {s2}. So {P} has {N}.", "We know {s1}, and {s2}. {P} has {N}.",
           "{S1}. After that, {s2}. That means {P} has {N}.", "Work it out: {s1}, then {s2}. {P} has {N}.")


def worked_solution(rng: random.Random, p: Problem, result: int | None = None) -> str:
    """The problem's solution in prose; `result` replaces the last step's result (a wrong solution)."""
    if p.clauses:
        from . import chains

        return chains.worked_solution(rng, p, result)
    (x1, op1, y1, r1), (x2, op2, y2, r2) = p.steps
    s1 = rng.choice(_SAY[op1]).format(x=x1, y=y1, r=r1)
    r2 = r2 if result is None else result
    s2 = rng.choice(_SAY[op2]).format(x=x2, y=y2, r=r2)
    return rng.choice(_WORKED).format(s1=s1, s2=s2, S1=s1[0].upper() + s1[1:], P=p.person, N=_plural(r2, p.item))


def _step(i: int, x: int, op: str, y: int, r: int) -> str:
    return f"Step {i}: {x} {op} {y} = {r}.\n"


def _wrong(rng: random.Random, correct: int, ok) -> int:
    deltas = [d for d in (-3, -2, -1, 1, 2, 3) if correct + d >= 0 and ok(correct + d)]
    return correct + rng.choice(deltas)


def core(question: str) -> str:
    """A question without its optional "In <town>, " prefix: the same problem, with the same numbers and answer."""
    return re.sub(r"^In [A-Z][a-z]+, ", "", question)


def _unique_problems(world: World, rng: random.Random, n: int, exclude: set[str]) -> list[Problem]:
    """`n` distinct problems, none in `exclude`. From world v5 on, a problem with and without its town prefix
    is the same problem (v3 compares whole questions, so 3 of its 800 held-out problems are training problems:
    tests/miniature/test_world.py's xfail; fixing it in v3 would change the data its results were measured on)."""
    key = world.problem_key
    seen, out, tries = {key(q) for q in exclude}, [], 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 10_000:
            raise ValueError(f"could not draw {n} distinct word problems outside the {len(exclude)} excluded")
        p = _problem(world, rng)
        if key(p.question) in seen:
            continue
        seen.add(key(p.question))
        out.append(p)
    return out


# --------------------------------------------------------------------------------------------------
# Short paragraphs (title-task abstracts, also part of the corpus)
# --------------------------------------------------------------------------------------------------

_TOWN_FILLER = ("Many visitors come in the summer.", "The market opens every morning.", "The streets are narrow and old.",
                "Most houses have red roofs.", "Children play by the water.", "The town is quiet at night.")
_PERSON_FILLER = ("{P} has many friends.", "{Pr} likes long walks.", "{Pr} gets up early every day.",
                  "{Pr} often visits the market.", "{P} likes to read at night.")
_ANIMAL_FILLER = ("It eats grass and seeds.", "It sleeps during the day.", "It is a shy animal.",
                  "It can run very fast.", "It lives near rivers.")


def _town_paragraph(world: World, rng: random.Random, kind: str) -> tuple[str, list[str], str]:
    t = rng.choice(world.towns)
    filler = rng.choice(_TOWN_FILLER)
    if kind == "town_bridges":
        return f"Bridges of {t.name}", [
            f"{t.name} has {_bridges(t.bridges)} over the {t.river}.",
            rng.choice((f"It is a town in the {t.region} region.", "The oldest bridge is made of stone.",
                        "People cross the bridges every day."))], filler
    if kind == "town_river":
        return f"The {t.river} at {t.name}", [
            f"The {t.river} river flows through {t.name}.",
            rng.choice((f"Boats on the {t.river} carry {t.product} from {t.name}.",
                        f"The {t.river} is wide and slow near {t.name}.",
                        f"Fish from the {t.river} are sold in {t.name}."))], filler
    return f"The {t.product.capitalize()} of {t.name}", [
        f"{t.name} is known for its {t.product}.",
        rng.choice((f"Many people in {t.name} make {t.product} and sell it in {t.region}.",
                    f"The {t.product} of {t.name} is sold in every town of {t.region}.",
                    f"Making {t.product} is the main work in {t.name}."))], filler


def _region_paragraph(world: World, rng: random.Random, kind: str) -> tuple[str, list[str], str]:
    region = rng.choice(world.regions)
    towns = [t for t in world.towns if t.region == region]
    picked = rng.sample(towns, 2)
    filler = rng.choice((f"{region} has hills and farms.", f"The roads of {region} are long.",
                         f"Winters in {region} are cold."))
    if kind == "region_towns":
        return f"The Towns of {region}", [
            f"The {region} region has {len(towns)} towns, such as {picked[0].name} and {picked[1].name}.",
            f"The biggest market of {region} is in {picked[0].name}."], filler
    rivers = sorted({t.river for t in towns})
    if len(rivers) == 1:
        first = f"The only river of the {region} region is the {rivers[0]}."
    else:
        first = f"The rivers of the {region} region include the {rivers[0]} and the {rivers[1]}."
    return f"The Rivers of {region}", [first, f"The {picked[0].river} flows through {picked[0].name}."], filler


def _person_paragraph(world: World, rng: random.Random, kind: str) -> tuple[str, list[str], str]:
    p = rng.choice(world.people)
    filler = rng.choice(_PERSON_FILLER).format(P=p.name, Pr=p.pron.capitalize())
    if kind == "person_home":
        return f"{p.name} of {p.town}", [f"{p.name} lives in {p.town} and is {p.age} years old.",
                                         f"{p.pron.capitalize()} likes the {world.town[p.town].river} river."], filler
    if kind == "person_number":
        return f"{p.name} and the Number {p.number}", [
            f"The favourite number of {p.name} is {p.number}.",
            f"{p.pron.capitalize()} sees the number {p.number} everywhere in {p.town}."], filler
    return f"{p.name} and the {p.likes.capitalize()}", [
        f"{p.name} collects {p.likes}.", f"{p.pron.capitalize()} keeps {p.poss} {p.likes} in a box at home."], filler


def _animal_paragraph(world: World, rng: random.Random, kind: str) -> tuple[str, list[str], str]:
    a = rng.choice(world.animals)
    filler = rng.choice(_ANIMAL_FILLER)
    if kind == "animal_legs":
        return f"Legs of the {a.name.capitalize()}", [f"A {a.name} has {a.legs} legs.",
                                                       f"It walks on all {a.legs} legs at once."], filler
    return f"The {a.colour.capitalize()} {a.name.capitalize()}", [
        f"The {a.name} is a {a.colour} animal.", f"Its {a.colour} skin is easy to see."], filler


_PARAGRAPHS = {"town": _town_paragraph, "region": _region_paragraph, "person": _person_paragraph,
               "animal": _animal_paragraph}


def _paragraph(world: World, rng: random.Random) -> tuple[str, str]:
    """(title, abstract): 2-3 sentences about one entity and topic; the title follows from both."""
    kind = rng.choice(("town_bridges", "town_river", "town_product", "town_bridges", "town_river", "town_product",
                       "region_towns", "region_rivers", "person_home", "person_number", "person_items",
                       "animal_legs", "animal_colour"))
    title, sentences, filler = _PARAGRAPHS[kind.split("_")[0]](world, rng, kind)
    if rng.random() < 0.5:
        sentences.append(filler)
    return title, " ".join(sentences)


# --------------------------------------------------------------------------------------------------
# Pretraining corpus
# --------------------------------------------------------------------------------------------------

FORBIDDEN = ("Step 1:", "The answer is", "####", "### Instruction", "Title:")


def _fact_doc(world: World, rng: random.Random, subject) -> str:
    if isinstance(subject, Town):
        groups = [_town_region(subject), _town_river(subject), _town_product(subject), _town_bridges(subject)]
    elif isinstance(subject, Animal):
        groups = [_animal_legs(subject), _animal_colour(subject)]
    else:
        p = subject
        groups = [_person_town(p), _person_age(p), (f"The favourite number of {p.name} is {p.number}.",
                                                    f"{p.name} likes the number {p.number}."),
                  (f"{p.name} collects {p.likes}.",)]
    rng.shuffle(groups)
    sentences = []
    for g in groups:
        s = rng.choice(g)
        if s not in sentences:
            sentences.append(s)
    facts = world.facts()
    # Facts about other entities keep documents at 100-400 bytes and mix contexts.
    while len(" ".join(sentences)) < 100 or (rng.random() < 0.3 and len(" ".join(sentences)) < 300):
        s = rng.choice(rng.choice(facts).sentences)
        if s not in sentences:
            sentences.append(s)
    return " ".join(sentences)


def _arith_doc(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(8, 16)):
        a, op, b, r = _arith(rng)
        form = rng.randrange(3)
        if form == 0:
            lines.append(f"{a} {_SYM[op]} {b} makes {r}.")
        elif form == 1:
            lines.append(f"{a} {op} {b} = {r}")
        else:
            lines.append(f"{a} {_SYM[op]} {b} is {r}.")
    return "\n".join(lines)


def _worked_doc(world: World, rng: random.Random) -> str:
    """One or two word problems, each followed by its worked solution in prose."""
    return _fit(world, [f"{p.question} {worked_solution(rng, p)}" for p in
                        (_problem(world, rng, known_only=True) for _ in range(rng.randint(1, 2)))], "\n")


def _fit(world: World, parts: list[str], sep: str, limit: int = 400) -> str:
    """World v5's 3-step problems are longer: drop trailing parts so a document stays within `limit` bytes (the
    parts are drawn first, so v3, whose documents always fit, keeps every byte)."""
    if world.version >= 5:
        while len(parts) > 1 and len(sep.join(parts).encode()) > limit:
            parts = parts[:-1]
    return sep.join(parts)


def _quiz_doc(world: World, rng: random.Random) -> str:
    """Quiz lines about the world's facts: the question/answer form that ARC-style questions take."""
    facts = world.facts()
    lines = []
    for fact in rng.sample(facts, rng.randint(3, 6)):
        lines.append(f"Question: {fact.question}\nAnswer: {fact.answer}")
    return "\n".join(lines)


def _story_doc(world: World, rng: random.Random) -> str:
    stories = []
    for _ in range(rng.randint(2, 4)):
        if rng.random() < 0.6:
            stories.append(_problem(world, rng, known_only=True).story)
            continue
        p, item = rng.choice(world.people), rng.choice(ITEMS)
        a, op, b, r = _arith(rng)
        while op == "*" and a == 0:
            a, op, b, r = _arith(rng)
        if op == "+":
            stories.append(f"{p.name} had {_plural(a, item)} and found {b} more, so {p.pron} had {_plural(r, item)}.")
        elif op == "-":
            stories.append(f"{p.name} had {_plural(a, item)} and gave away {b}, so {p.pron} had {_plural(r, item)} left.")
        else:
            stories.append(f"{p.name} had {a} {rng.choice(CONTAINERS)} with {_plural(b, item)} in each, "
                           f"so {p.pron} had {_plural(r, item)}.")
    return _fit(world, stories, " ")


def pretraining_corpus(world: World, seed: int, n_docs: int) -> list[str]:
    """Plain-text documents: fact paraphrases, fact quizzes, arithmetic lines, word-problem stories, worked
    word problems, short paragraphs.

    Fact documents cycle through every town, animal and person (in a shuffled order), so every fact
    is stated once the corpus has more fact documents (about 22% of all) than the world has entities.
    World v3 added the quizzes (8%) and the worked problems (20%): with v2's corpus the base model
    scored ARC near chance and could not copy a question's numbers into a solution. World v5 gives 10 of the
    arithmetic's 27% and 5 of the stories' 8% to recall documents (chains.recall_doc), which teach copying from the
    context.
    """
    rng = random.Random(f"corpus-{seed}")
    entities = list(world.towns) + list(world.animals) + list(world.people)
    order: list = []
    docs = []
    for _ in range(n_docs):
        u = rng.random()
        if u < 0.22:
            if not order:
                order = entities[:]
                rng.shuffle(order)
            docs.append(_fact_doc(world, rng, order.pop()))
        elif u < 0.3:
            docs.append(_quiz_doc(world, rng))
        elif u < (0.47 if world.version >= 5 else 0.57):
            docs.append(_arith_doc(rng))
        elif u < 0.62 and world.version >= 5:  # recall documents: 10 of arithmetic's 27%, 5 of the stories' 8%
            from . import chains

            docs.append(chains.recall_doc(world, rng))
        elif u < 0.65:
            docs.append(_story_doc(world, rng))
        elif u < 0.85:
            docs.append(_worked_doc(world, rng))
        else:
            parts = [_paragraph(world, rng)[1]]
            while len(" ".join(parts)) < 100:
                parts.append(_paragraph(world, rng)[1])
            docs.append(" ".join(parts))
    return docs


# --------------------------------------------------------------------------------------------------
# Warm-up chat data (mlabonne/orpo-dpo-mix-40k schema)
# --------------------------------------------------------------------------------------------------

_OFF_TOPIC = ("I like the colour blue.", "The weather is nice today.", "I do not know.", "Let us talk about cats.",
              "That is a good question.", "Maybe.")


def _warmup_pair(world: World, rng: random.Random, exclude: set[str] | frozenset = frozenset(),
                 known_only: bool = False) -> tuple[str, str, str, str]:
    """(source, question, good reply, bad reply). Word problems whose `world.problem_key` is in `exclude` are redrawn;
    `known_only`: their events are the base model's (world v5's instruct chats)."""
    kind = rng.randrange(7)
    if kind == 6:  # like the real mix's distilabel-math rows: word problems solved in prose
        p = _problem(world, rng, known_only)
        while world.problem_key(p.question) in exclude:
            p = _problem(world, rng, known_only)
        wrong = _wrong(rng, p.answer, lambda v: True)
        return "distilabel-math-preference-dpo", p.question, worked_solution(rng, p), worked_solution(rng, p, wrong)
    if kind == 0:
        a, op, b, r = _arith(rng)
        q = rng.choice((f"What is {a} {_SYM[op]} {b}?", f"What is {a} {op} {b}?", f"Please work out {a} {_SYM[op]} {b}."))
        bad = rng.choice((f"{a} {_SYM[op]} {b} is {r + rng.choice((1, 2, 3))}.", rng.choice(_OFF_TOPIC)))
        return "distilabel-math-preference-dpo", q, f"{a} {_SYM[op]} {b} is {r}.", bad
    if kind in (1, 2):
        fact = rng.choice(world.facts())
        s = fact.sentences[0]
        if fact.kind == "person_town":
            good = f"{fact.subject} lives in {fact.answer}."
        elif fact.kind == "town_region":
            good = f"{fact.subject} is in the {fact.answer} region."
        else:
            good = s
        wrong = rng.choice([v for v in world.values(fact.kind) if v != fact.answer])
        bad = rng.choice((good.replace(fact.answer, wrong, 1) if fact.answer in good else rng.choice(_OFF_TOPIC),
                          rng.choice(_OFF_TOPIC)))
        if bad == good:
            bad = "I do not know."
        return rng.choice(("truthy-dpo-v0.1", "capybara")), fact.question, good, bad
    if kind == 3:
        p = rng.choice(world.people)
        t = world.town[p.town]
        q, good = rng.choice(((f"Tell me about {p.name}.", f"{p.name} lives in {p.town} and is {p.age} years old."),
                              (f"Tell me about {t.name}.", f"{t.name} is a town in the {t.region} region."),
                              (f"What is the favourite number of {p.name}?",
                               f"The favourite number of {p.name} is {p.number}."),
                              (f"Say hello to {p.name}.", f"Hello, {p.name}!")))
        return "capybara", q, good, rng.choice(_OFF_TOPIC)
    w = rng.choice(WORDS)
    task = rng.randrange(6)
    if task == 0:
        q, good, bad = f"Repeat the word {w} twice.", f"{w} {w}", w
    elif task == 1:
        q, good, bad = f"Write the word {w} backwards.", w[::-1], w
    elif task == 2:
        q, good, bad = (f"What is the first letter of {w}?", f"The first letter of {w} is {w[0]}.",
                        f"The first letter of {w} is {w[-1]}.")
    elif task == 3:
        q, good, bad = f"Write {w} in capital letters.", w.upper(), w
    elif task == 4:
        q, good, bad = f"How many letters are in {w}?", f"{w} has {len(w)} letters.", f"{w} has {len(w) + 1} letters."
    else:
        ws = rng.sample(WORDS, 3)
        q, good, bad = f"Sort these words: {', '.join(ws)}.", ", ".join(sorted(ws)), ", ".join(sorted(ws, reverse=True))
        if bad == good:
            bad = rng.choice(_OFF_TOPIC)
    if bad == good:
        bad = rng.choice(_OFF_TOPIC)
    return rng.choice(("airoboros-3.2", "evol_instruct")), q, good, bad


def warmup_rows(world: World, seed: int, n: int, exclude: set[str] | frozenset = frozenset(),
                toxic: float = 0.02, name: str = "warmup", known_only: bool = False) -> list[dict]:
    """Rows of mlabonne/orpo-dpo-mix-40k: source, chosen, rejected, prompt, question; ~2% toxic-dpo placeholders.

    Word problems whose question is in `exclude` (the math tasks' prompts) are never drawn, so the
    warm-up cannot leak a test answer."""
    rng = random.Random(f"{name}-{seed}")
    exclude = {world.problem_key(q) for q in exclude}
    rows = []
    for _ in range(n):
        if rng.random() < toxic:
            source, q = "toxic-dpo-v0.2", "[placeholder: harmful request removed]"
            good, bad = "[placeholder reply]", "[placeholder reply removed]"
        else:
            source, q, good, bad = _warmup_pair(world, rng, exclude, known_only)
        rows.append({"source": source,
                     "chosen": [{"content": q, "role": "user"}, {"content": good, "role": "assistant"}],
                     "rejected": [{"content": q, "role": "user"}, {"content": bad, "role": "assistant"}],
                     "prompt": q, "question": q})
    return rows


def chat_test_rows(world: World, seed: int, n: int, exclude: set[str]) -> list[dict]:
    """Warm-up-schema rows whose prompts are in neither the warm-up data nor the tasks (`exclude`), with
    each source at most its share of the warm-up mix (some kinds, e.g. fact questions, have few distinct
    prompts left once the warm-up has drawn its rows, so an unweighted draw would be mostly arithmetic)."""
    candidates = warmup_rows(world, seed, 40 * n + 1000, exclude=exclude, toxic=0.0, name="chat-test")
    share = Counter(row["source"] for row in candidates[: 20 * n])
    quota = Counter({src: max(1, math.ceil(n * count / (20 * n))) for src, count in share.items()})
    out, seen, taken = [], set(exclude), Counter()
    for capped in (True, False):  # kinds with too few fresh prompts leave their room to the others
        for row in candidates:
            if row["prompt"] not in seen and (not capped or taken[row["source"]] < quota[row["source"]]):
                seen.add(row["prompt"])
                taken[row["source"]] += 1
                out.append(row)
                if len(out) == n:
                    return out
    raise ValueError(f"could not draw {n} held-out chat prompts outside the {len(exclude)} excluded")


# --------------------------------------------------------------------------------------------------
# Math (xinlai/Math-Step-DPO-10K and openai/gsm8k schemas)
# --------------------------------------------------------------------------------------------------


def _math_row(rng: random.Random, p: Problem) -> dict:
    if p.clauses:
        from . import chains

        return chains.math_row(rng, p)
    (a, op1, b, r1), (_, op2, c, r2) = p.steps
    k = rng.randrange(2)
    if k == 0:
        initial = ""
        w1 = _wrong(rng, r1, lambda v: _apply(v, op2, c) >= 0)
        chosen, rejected = _step(1, a, op1, b, r1), _step(1, a, op1, b, w1)
        full_chosen = chosen + _step(2, r1, op2, c, r2) + f"The answer is: {r2}"
        m = _apply(w1, op2, c)
        full_rejected = rejected + _step(2, w1, op2, c, m) + f"The answer is: {m}"
    else:
        initial = _step(1, a, op1, b, r1)
        m = _wrong(rng, r2, lambda v: True)
        chosen, rejected = _step(2, r1, op2, c, r2), _step(2, r1, op2, c, m)
        full_chosen = chosen + f"The answer is: {r2}"
        full_rejected = rejected + f"The answer is: {m}"
    return {"dataset": rng.choice(("GSM_AnsAug", "GSM_Rephrased")), "prompt": p.question,
            "initial_reason_steps": initial, "chosen": chosen, "rejected": rejected, "full_chosen": full_chosen,
            "full_rejected": full_rejected, "answer": str(r2)}


def math_rows(world: World, seed: int, n: int, exclude: set[str] | frozenset = frozenset()) -> list[dict]:
    """Rows of xinlai/Math-Step-DPO-10K: two-step word problems, distinct prompts, none in `exclude`."""
    rng = random.Random(f"math-{seed}")
    return [_math_row(rng, p) for p in _unique_problems(world, rng, n, set(exclude))]


def gsm8k_solution(p: Problem) -> str:
    if p.clauses:
        from . import chains

        return chains.gsm8k_solution(p)
    return "".join(f"{x} {op} {y} = {r}\n" for x, op, y, r in p.steps) + f"#### {p.answer}"


def gsm8k_from_math(row: dict) -> dict:
    """The same problem in the GSM8K schema, so the validation split can be scored like the test set."""
    lines = (row["initial_reason_steps"] + row["full_chosen"]).strip().splitlines()
    steps = [line.split(": ", 1)[1].rstrip(".") for line in lines if line.startswith("Step ")]
    return {"question": row["prompt"], "answer": "".join(f"{s}\n" for s in steps) + f"#### {row['answer']}"}


def gsm8k_rows(world: World, seed: int, n: int, exclude: set[str] | frozenset = frozenset()) -> list[dict]:
    """Rows of openai/gsm8k (question, answer = worked solution ending '#### N'), none in `exclude`."""
    rng = random.Random(f"gsm8k-{seed}")
    return [{"question": p.question, "answer": gsm8k_solution(p)} for p in _unique_problems(world, rng, n, set(exclude))]


# --------------------------------------------------------------------------------------------------
# Titles and ARC-Easy
# --------------------------------------------------------------------------------------------------


def title_rows(world: World, seed: int, n: int) -> list[dict]:
    """Rows of the econ-abstracts CSV (title, abstract): a short paragraph and the title it implies."""
    rng = random.Random(f"titles-{seed}")
    rows = []
    for _ in range(n):
        title, abstract = _paragraph(world, rng)
        rows.append({"title": title, "abstract": abstract})
    return rows


def arc_rows(world: World, seed: int, n: int) -> list[dict]:
    """Rows of ARC-Easy (id, question, choices{text,label}, answerKey) about facts the corpus states."""
    rng = random.Random(f"arc-{seed}")
    facts, pool, rows = world.facts(), [], []
    for i in range(n):
        if not pool:
            pool = facts[:]
            rng.shuffle(pool)
        fact = pool.pop()
        options = [fact.answer] + rng.sample([v for v in world.values(fact.kind) if v != fact.answer], 3)
        rng.shuffle(options)
        labels = list("1234") if rng.random() < 0.05 else list("ABCD")
        rows.append({"id": f"World_{seed}_{i:05d}", "question": fact.question,
                     "choices": {"text": options, "label": labels}, "answerKey": labels[options.index(fact.answer)]})
    return rows


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

DEFAULT_SIZES = {"corpus": 20_000, "warmup": 2_000, "chat_test": 200, "math_train": 10_000, "math_validation": 500,
                 "gsm8k_test": 300, "titles": 2_100, "arc": 300}
FILES = {"corpus": "corpus.txt", "warmup": "orpo_dpo_mix.jsonl", "chat_test": "chat_test.jsonl",
         "math_train": "math_step_dpo.jsonl",
         "math_validation": "math_validation.jsonl", "gsm8k_validation": "gsm8k_validation.jsonl",
         "gsm8k_test": "gsm8k_test.jsonl", "titles": "econ_titles.csv", "arc": "arc_easy_test.jsonl"}


def write_all(out_dir: Path, seed: int = 0, sizes: dict | None = None, version: int = 3) -> dict[str, Path]:
    """Write every file of the miniature world (`version`: World's) into `out_dir`; returns {key: path}."""
    unknown = set(sizes or {}) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown sizes {sorted(unknown)}; choose from {sorted(DEFAULT_SIZES)}")
    size = {**DEFAULT_SIZES, **(sizes or {})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = World(seed, version)
    paths = {k: out_dir / name for k, name in FILES.items()}

    docs = pretraining_corpus(world, seed, size["corpus"])
    with open(paths["corpus"], "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(docs) + "\n")
    train = math_rows(world, seed, size["math_train"])
    taken = {r["prompt"] for r in train}
    validation = math_rows(world, seed + 1_000_003, size["math_validation"], exclude=taken)
    taken |= {r["prompt"] for r in validation}
    test = gsm8k_rows(world, seed, size["gsm8k_test"], exclude=taken)
    taken |= {r["question"] for r in test}
    warmup = warmup_rows(world, seed, size["warmup"], exclude=taken)
    write_jsonl(paths["warmup"], warmup)
    # Held-out chat exchanges of the warm-up's kinds, to measure the chat behaviour the warm-up teaches.
    write_jsonl(paths["chat_test"], chat_test_rows(world, seed, size["chat_test"], taken | {r["prompt"] for r in warmup}))
    write_jsonl(paths["math_train"], train)
    write_jsonl(paths["math_validation"], validation)
    write_jsonl(paths["gsm8k_validation"], [gsm8k_from_math(r) for r in validation])  # tuning without the test set
    write_jsonl(paths["gsm8k_test"], test)
    with open(paths["titles"], "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["title", "abstract"], quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(title_rows(world, seed, size["titles"]))
    write_jsonl(paths["arc"], arc_rows(world, seed, size["arc"]))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the miniature world's corpus and task data.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=int, default=3, choices=VERSIONS, help="the world's version (default 3)")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=N",
                        help=f"rows (documents for the corpus) of one file; keys: {', '.join(DEFAULT_SIZES)}")
    args = parser.parse_args(argv)
    sizes = {}
    for item in args.size:
        key, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            parser.error(f"--size {item!r}: use KEY=N, e.g. --size math_train=1200")
        sizes[key] = int(n)
    start = time.perf_counter()
    try:
        paths = write_all(args.out, seed=args.seed, sizes=sizes, version=args.world)
    except ValueError as err:
        parser.error(str(err))
    for key, path in paths.items():
        print(f"{key:16s} {path} {path.stat().st_size:,} bytes")
    print(f"done in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
