"""The miniature world: deterministic files in the real data sets' exact schemas, consistent answers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from d2lora_exp.miniature import world as W

SIZES = {"corpus": 600, "warmup": 400, "chat_test": 50, "math_train": 400, "math_validation": 60, "gsm8k_test": 60,
         "titles": 80, "arc": 120}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    return W.write_all(tmp_path_factory.mktemp("world0"), seed=0, sizes=SIZES)


def jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [json.loads(line) for line in text.splitlines()]


def test_same_seed_identical_other_seed_different(built, tmp_path):
    again = W.write_all(tmp_path / "again", seed=0, sizes=SIZES)
    other = W.write_all(tmp_path / "other", seed=1, sizes=SIZES)
    assert set(again) == set(built) == set(W.FILES)
    for key, path in built.items():
        assert path.read_bytes() == again[key].read_bytes(), key
        assert path.read_bytes() != other[key].read_bytes(), key


def test_world_shape():
    w = W.World(0)
    assert len(w.towns) == 40 and len({t.name for t in w.towns}) == 40
    assert len(set(w.regions)) == 8 and len(w.animals) == 12 and len(w.people) == 30
    assert all(4 <= len(t.name) <= 7 and 1 <= t.bridges <= 9 for t in w.towns)
    assert all(10 <= p.age <= 60 and p.town in w.town for p in w.people)
    assert [t.name for t in W.World(0).towns] == [t.name for t in w.towns] != [t.name for t in W.World(1).towns]


def test_warmup_schema_and_toxic_rows(built):
    rows = jsonl(built["warmup"])
    assert len(rows) == SIZES["warmup"]
    for r in rows:
        assert list(r) == ["source", "chosen", "rejected", "prompt", "question"]
        assert all(isinstance(r[k], str) for k in ("source", "prompt", "question"))
        for side in ("chosen", "rejected"):
            assert [m["role"] for m in r[side]] == ["user", "assistant"]
            assert all(list(m) == ["content", "role"] and isinstance(m["content"], str) for m in r[side])
            assert r[side][0]["content"] == r["prompt"] == r["question"]
        assert r["chosen"][1]["content"] != r["rejected"][1]["content"]
        assert "The answer is" not in r["chosen"][1]["content"] and "Step 1:" not in r["chosen"][1]["content"]
    assert any(r["source"] == "toxic-dpo-v0.2" for r in rows)


MATH_COLUMNS = ["dataset", "prompt", "initial_reason_steps", "chosen", "rejected", "full_chosen", "full_rejected",
                "answer"]


def final(text: str) -> str:
    m = re.search(r"The answer is: (\d+)$", text)
    assert m, text
    return m.group(1)


def check_steps(text: str) -> None:
    for x, op, y, r in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", text):
        assert W._apply(int(x), op, int(y)) == int(r), text


@pytest.mark.parametrize("key", ["math_train", "math_validation"])
def test_math_schema_and_answers(built, key):
    rows = jsonl(built[key])
    assert len(rows) == SIZES[key] and len({r["prompt"] for r in rows}) == len(rows)
    for r in rows:
        assert list(r) == MATH_COLUMNS and all(isinstance(v, str) for v in r.values())
        assert r["answer"] == final(r["full_chosen"]) != final(r["full_rejected"])
        assert r["full_chosen"].startswith(r["chosen"]) and r["full_rejected"].startswith(r["rejected"])
        assert r["chosen"] != r["rejected"] and r["chosen"].split("=")[0] == r["rejected"].split("=")[0]
        check_steps(r["initial_reason_steps"] + r["full_chosen"])
        assert r["initial_reason_steps"] in ("", ) or r["initial_reason_steps"].startswith("Step 1: ")
        assert len(r["prompt"].encode()) < 200 and "Step" not in r["prompt"]
        values = [int(v) for v in re.findall(r"\d+", r["initial_reason_steps"] + r["full_chosen"])]
        assert all(0 <= v <= W.MAX_VALUE for v in values)


def test_gsm8k_schema_answers_and_disjoint_splits(built):
    gsm = jsonl(built["gsm8k_test"])
    assert len(gsm) == SIZES["gsm8k_test"]
    for r in gsm:
        assert list(r) == ["question", "answer"] and all(isinstance(v, str) for v in r.values())
        lines = r["answer"].split("\n")
        assert re.fullmatch(r"#### \d+", lines[-1])
        check_steps(r["answer"])
        assert lines[-2].rsplit("= ", 1)[1] == lines[-1][5:]
    train = {r["prompt"] for r in jsonl(built["math_train"])}
    val = {r["prompt"] for r in jsonl(built["math_validation"])}
    test = {r["question"] for r in gsm}
    assert len(test) == len(gsm)
    assert not (train & val) and not (train & test) and not (val & test)


def test_gsm8k_matches_math_style_solution():
    """Both schemas are written from the same problems: the GSM8K solution is the Step solution reformatted."""
    import random

    w = W.World(0)
    rng = random.Random(5)
    for p in W._unique_problems(w, rng, 200, set()):
        m, g = W._math_row(rng, p), W.gsm8k_solution(p)
        math_style = m["initial_reason_steps"] + m["full_chosen"]
        as_gsm = re.sub(r"Step \d+: (.*)\.\n", r"\1\n", math_style).replace("The answer is: ", "#### ")
        assert as_gsm == g and g.endswith("#### " + m["answer"])
    assert [r["question"] for r in W.gsm8k_rows(w, 3, 50, exclude=set())] == [
        r["question"] for r in W.gsm8k_rows(w, 3, 50)]
    taken = {r["question"] for r in W.gsm8k_rows(w, 3, 50)}
    assert not ({r["question"] for r in W.gsm8k_rows(w, 3, 50, exclude=taken)} & taken)


def test_math_can_make_10k_distinct_prompts():
    rows = W.math_rows(W.World(0), 0, 10_500)
    assert len({r["prompt"] for r in rows}) == 10_500


def test_warmup_word_problems_are_solved_in_prose_and_never_a_task_prompt(built):
    rows = jsonl(built["warmup"])
    tasks = ({r["prompt"] for key in ("math_train", "math_validation") for r in jsonl(built[key])}
             | {r["question"] for r in jsonl(built["gsm8k_test"])})
    problems = [r for r in rows if r["prompt"].startswith(tuple(p for p, _ in W.PEOPLE) + ("In ",))]
    assert len(problems) > len(rows) // 12  # about 1 in 7 rows
    for r in problems:
        assert r["prompt"] not in tasks
        good, bad = r["chosen"][1]["content"], r["rejected"][1]["content"]
        assert re.search(r"has \d+ \w+\.$", good) and good.split()[-2] != bad.split()[-2]
        for text in (good, bad):
            assert not any(f in text for f in W.FORBIDDEN)


def test_chat_test_is_held_out_and_mixes_the_warmup_kinds(built):
    rows, warm = jsonl(built["chat_test"]), jsonl(built["warmup"])
    assert len(rows) == SIZES["chat_test"] and list(rows[0]) == list(warm[0])
    tasks = {r["question"] for r in jsonl(built["gsm8k_test"])} | {r["prompt"] for r in jsonl(built["math_train"])}
    prompts = [r["prompt"] for r in rows]
    assert len(set(prompts)) == len(prompts) and not set(prompts) & ({r["prompt"] for r in warm} | tasks)
    sources = {r["source"] for r in rows}
    assert "toxic-dpo-v0.2" not in sources and len(sources) >= 4


def test_corpus_teaches_worked_problems_and_quizzes_without_task_conventions(built):
    text = built["corpus"].read_text(encoding="utf-8")
    assert re.search(r"How many \w+ does \w+ have( now| left)?\? (First|We know|Work it out|\d)", text)
    quiz = re.findall(r"Question: (.+)\nAnswer: (.+)", text)
    facts = {f.question: f.answer for f in W.World(0).facts()}
    assert len(quiz) > 50 and all(facts[q] == a for q, a in quiz)
    # every arithmetic line is right, and sums reach the problems' largest values
    lines = re.findall(r"^(\d+) ([-+*]) (\d+) = (\d+)$", text, re.M)
    assert all(W._apply(int(x), op, int(y)) == int(r) for x, op, y, r in lines)
    assert max(int(r) for x, op, y, r in lines if op == "+") == W.MAX_VALUE


def test_corpus_plain_text(built):
    text = built["corpus"].read_text(encoding="utf-8")
    docs = text.rstrip("\n").split("\n\n")
    assert len(docs) == SIZES["corpus"]
    for bad in W.FORBIDDEN + ("<|", "|>"):
        assert bad not in text, bad
    assert all(len(d.encode()) <= 400 for d in docs)
    assert re.search(r"\b\d+ plus \d+ makes \d+\.", text) and re.search(r"^\d+ \+ \d+ = \d+$", text, re.M)


def test_titles_csv(built):
    raw = built["titles"].read_text(encoding="utf-8")
    assert raw.startswith('"title","abstract"\n')
    with open(built["titles"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == SIZES["titles"]
    for r in rows:
        assert list(r) == ["title", "abstract"] and r["title"] and r["abstract"]
        assert 2 <= r["abstract"].count(". ") + 1 <= 3
        # the title's capitalised entity (town, region, river, person or animal) is named in the abstract
        names = [wd for wd in re.findall(r"[A-Z][a-z]+", r["title"]) if wd not in ("The", "Bridges", "Legs", "Number",
                                                                                   "Towns", "Rivers", "Of")]
        assert any(n in r["abstract"] or n.lower() in r["abstract"] for n in names), r


def test_arc_schema_and_answers_stated_in_corpus(built):
    w = W.World(0)
    corpus = built["corpus"].read_text(encoding="utf-8")
    facts = {f.question: f for f in w.facts()}
    rows = jsonl(built["arc"])
    assert len(rows) == SIZES["arc"]
    numeric = 0
    for r in rows:
        assert list(r) == ["id", "question", "choices", "answerKey"]
        assert list(r["choices"]) == ["text", "label"]
        labels, texts = r["choices"]["label"], r["choices"]["text"]
        assert labels in (list("ABCD"), list("1234")) and len(set(texts)) == 4
        numeric += labels == list("1234")
        fact = facts[r["question"]]
        assert texts[labels.index(r["answerKey"])] == fact.answer
        assert set(texts) <= set(w.values(fact.kind))
        assert any(re.search(r"(^|[ \n])" + re.escape(s) + r"($|[ \n])", corpus) for s in fact.sentences), fact
    assert 0 < numeric < len(rows) // 4
    assert len({r["id"] for r in rows}) == len(rows)


def test_cli(tmp_path, capsys):
    W.main(["--out", str(tmp_path / "cli"), "--seed", "2"])
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(W.FILES.values())
    assert len(jsonl(tmp_path / "cli" / "math_step_dpo.jsonl")) == 10_000
    assert "done in" in capsys.readouterr().out
