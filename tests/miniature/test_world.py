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


@pytest.fixture(scope="module", params=W.VERSIONS, ids=lambda v: f"v{v}")
def version(request) -> int:
    """Every test of the written files runs on each world version: v5 changes the problems, not the schemas."""
    return request.param


@pytest.fixture(scope="module")
def built(tmp_path_factory, version) -> dict[str, Path]:
    return W.write_all(tmp_path_factory.mktemp(f"world0-v{version}"), seed=0, sizes=SIZES, version=version)


def jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [json.loads(line) for line in text.splitlines()]


def test_same_seed_identical_other_seed_different(built, version, tmp_path):
    again = W.write_all(tmp_path / "again", seed=0, sizes=SIZES, version=version)
    other = W.write_all(tmp_path / "other", seed=1, sizes=SIZES, version=version)
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


def test_gsm8k_matches_math_style_solution(version):
    """Both schemas are written from the same problems: the GSM8K solution is the Step solution reformatted."""
    import random

    w = W.World(0, version)
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


def test_math_can_make_10k_distinct_prompts(version):
    rows = W.math_rows(W.World(0, version), 0, 10_500)
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
    assert re.search(r"How many \w+ does \w+ have( now| left)?\? (First|We know|Work it out|To begin|\d)", text)
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


def test_cli_sizes(tmp_path, capsys):
    W.main(["--out", str(tmp_path / "small"), *(f"--size={k}=12" for k in W.DEFAULT_SIZES)])
    assert len(jsonl(tmp_path / "small" / "math_step_dpo.jsonl")) == 12
    with pytest.raises(SystemExit):
        W.main(["--out", str(tmp_path / "bad"), "--size", "maths=3"])
    assert "unknown sizes ['maths']" in capsys.readouterr().err


# Carried over from the bundled generator's tests (tests/bundled/test_generate.py, removed with it): the
# column schema of every file, row counts as the `datasets` loaders read them, the warm-up's and ARC's
# structure, and no task problem shared between training and held-out sets, also as a substring.
MESSAGES = "messages"  # a list of {"content": str, "role": str}
SCHEMAS: dict[str, dict[str, object]] = {
    # mlabonne/orpo-dpo-mix-40k (the warm-up, and its held-out chat prompts)
    "warmup": {"source": str, "chosen": MESSAGES, "rejected": MESSAGES, "prompt": str, "question": str},
    "chat_test": {"source": str, "chosen": MESSAGES, "rejected": MESSAGES, "prompt": str, "question": str},
    # xinlai/Math-Step-DPO-10K
    "math_train": {c: str for c in MATH_COLUMNS},
    "math_validation": {c: str for c in MATH_COLUMNS},
    # openai/gsm8k, main
    "gsm8k_validation": {"question": str, "answer": str},
    "gsm8k_test": {"question": str, "answer": str},
    # onurkeles/econ_paper_abstracts
    "titles": {"title": str, "abstract": str},
    # allenai/ai2_arc, ARC-Easy
    "arc": {"id": str, "question": str, "choices": {"text": list, "label": list}, "answerKey": str},
}
ROWS = {**SIZES, "gsm8k_validation": SIZES["math_validation"]}


def _columns_and_rows(path: Path) -> tuple[list[str], list[dict]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    rows = jsonl(path)
    return list(rows[0]), rows


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_schema_of_every_file(built, key):
    raw = built[key].read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    columns, rows = _columns_and_rows(built[key])
    schema = SCHEMAS[key]
    assert columns == list(schema) and len(rows) == ROWS[key]
    for row in rows:
        assert list(row) == list(schema)
        for col, kind in schema.items():
            value = row[col]
            if kind is MESSAGES:
                assert isinstance(value, list) and value
                for m in value:
                    assert list(m) == ["content", "role"] and all(isinstance(v, str) and v for v in m.values())
            elif isinstance(kind, dict):
                assert isinstance(value, dict) and list(value) == list(kind)
                for k, t in kind.items():
                    assert isinstance(value[k], t) and all(isinstance(x, str) for x in value[k])
            else:
                assert isinstance(value, kind), (col, value)
                assert value != "" or col == "initial_reason_steps", col  # no step before the pair


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_loadable_with_datasets(built, key, tmp_path):
    """The project reads these files with `datasets` (json/csv builders): columns and rows as written."""
    datasets = pytest.importorskip("datasets")
    builder = "csv" if built[key].suffix == ".csv" else "json"
    ds = datasets.load_dataset(builder, data_files=str(built[key]), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == list(SCHEMAS[key]) and len(ds) == ROWS[key]


@pytest.mark.parametrize("key", ["warmup", "chat_test"])
def test_preference_pairs_share_the_conversation_and_differ_in_the_reply(built, key):
    rows = jsonl(built[key])
    for r in rows:
        chosen, rejected = r["chosen"], r["rejected"]
        assert chosen[-1]["role"] == rejected[-1]["role"] == "assistant"
        assert chosen[:-1] == rejected[:-1] and chosen[-1]["content"] != rejected[-1]["content"]
        users = [m["content"] for m in chosen if m["role"] == "user"]
        assert users and r["prompt"] == r["question"] == users[0]
    assert len({r["source"] for r in rows}) >= 4


@pytest.mark.parametrize("key", ["math_train", "math_validation"])
def test_math_pair_is_the_step_after_the_initial_reasoning(built, key):
    rows = jsonl(built[key])
    for r in rows:
        k = r["initial_reason_steps"].count("Step ")
        assert r["chosen"].startswith(f"Step {k + 1}: ") and r["rejected"].startswith(f"Step {k + 1}: ")
        assert all(line.startswith(f"Step {i + 1}: ") for i, line in enumerate(r["initial_reason_steps"].splitlines()))
    assert {r["dataset"] for r in rows} == {"GSM_AnsAug", "GSM_Rephrased"}


def test_gsm8k_validation_is_the_math_validation_split_in_the_gsm8k_schema(built):
    val, gsm = jsonl(built["math_validation"]), jsonl(built["gsm8k_validation"])
    assert [r["question"] for r in gsm] == [r["prompt"] for r in val]
    assert all(g["answer"].endswith(f"#### {m['answer']}") for g, m in zip(gsm, val))


def _shared_problems(train: list[str], held_out: list[str]) -> list[str]:
    """Held-out problems that are a training prompt or contained in one (e.g. the same problem with an
    "In <town>, " prefix, which has the same numbers and answer)."""
    return [q for q in held_out if any(q in p or p in q for p in train)]


def test_held_out_problems_never_inside_a_training_prompt(built):
    train = [r["prompt"] for r in jsonl(built["math_train"])]
    val = [r["prompt"] for r in jsonl(built["math_validation"])]
    test = [r["question"] for r in jsonl(built["gsm8k_test"])]
    assert len(set(test)) == len(test) and len(set(val)) == len(val)
    assert not _shared_problems(train, test) and not _shared_problems(train, val)
    assert not _shared_problems(val, test)


@pytest.mark.xfail(strict=True, reason="known: at the full world's sizes 2 of the 300 GSM8K test problems and 1 of "
                   "the 500 validation problems are a training problem without (or with) its 'In <town>, ' prefix; "
                   "the generator dedupes whole questions only, and fixing it changes the full world's data")
def test_full_world_held_out_problems_never_inside_a_training_prompt(tmp_path):
    paths = W.write_all(tmp_path / "full", seed=0)
    train = [r["prompt"] for r in jsonl(paths["math_train"])]
    held = [r["prompt"] for r in jsonl(paths["math_validation"])] + [r["question"] for r in jsonl(paths["gsm8k_test"])]
    assert not _shared_problems(train, held)


def test_full_world_v5_held_out_problems_never_inside_a_training_prompt(tmp_path):
    """World v5 dedupes problems without their town prefix: no held-out problem is a training problem."""
    paths = W.write_all(tmp_path / "full", seed=0, version=5)
    train = [r["prompt"] for r in jsonl(paths["math_train"])]
    held = [r["prompt"] for r in jsonl(paths["math_validation"])] + [r["question"] for r in jsonl(paths["gsm8k_test"])]
    assert not _shared_problems(train, held)


def test_arc_choices_and_labels_match(built):
    for r in jsonl(built["arc"]):
        assert len(r["choices"]["text"]) == len(r["choices"]["label"]) and r["answerKey"] in r["choices"]["label"]


def test_smoke_world_sizes_fit_the_tests():
    """conf/data/smoke.yaml (experiment=smoke, the tests' world): every file it sizes, and pools the tests need."""
    from omegaconf import OmegaConf

    from d2lora_exp.config import config_dir

    sizes = OmegaConf.to_container(OmegaConf.load(config_dir() / "data" / "smoke.yaml"))["build"]["sizes"]
    assert set(sizes) == set(W.DEFAULT_SIZES) and all(0 < sizes[k] < W.DEFAULT_SIZES[k] for k in sizes)
    # tests/test_bad_input.py names the pools: 1200 math rows, 300 titles beside the 100 held out
    assert sizes["math_train"] == 1200 and sizes["titles"] == 400
