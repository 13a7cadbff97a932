"""GSM8K final-answer extraction and accuracy, by our checker and optionally by HF's Math-Verify beside it.

Models phrase their final answer in many ways (``#### 18``, ``\\boxed{\\$18}``, "The answer is 18
dollars."), so flexible accuracy tries explicit answer markers first, in Step-DPO's order, and only
then falls back to the last number in the text; strict accuracy credits only the ``#### N`` and
"The answer is N" formats the fine-tuning data teaches. Numbers are compared as values, not strings,
so ``1,234``, ``$1234.00`` and ``1234`` all agree.

`task.eval.checker` lists the checkers: `ours` (the above: `accuracy`, `strict_accuracy`) always, and
`math_verify` adds `accuracy_math_verify`, Math-Verify's verdict as its own GSM8K task computes it, so a
number can be set beside papers scored with it (see `math_verify_verdicts` for where the two disagree).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextlib import contextmanager
from fractions import Fraction
from importlib.metadata import version
from typing import Any

from omegaconf import ListConfig, OmegaConf

from ..errors import UserError
from ..fingerprint import content_config
from .base import Evaluator, limited

# Thousands-grouped, then fractions, then plain decimals: order matters, or "1,234" would stop at "1".
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+/\d+|\d+(?:\.\d+)?|\.\d+"
# The look-behind keeps "16-3" from reading as minus three and "x2" or "1.5" tails from counting.
_TOKEN_RE = re.compile(rf"(?<![\w.])(-)?[$€£¥]?\s?(-)?({_NUM})(?!\d)")
_WHOLE_RE = re.compile(rf"(-)?\s*(-)?\s*({_NUM})\s*(?:%|[^\W\d][^\d]*)?\.?")
_FINAL_RE = re.compile(r"final answer\s*(?:is\b|:)\s*([^\n]*)", re.IGNORECASE)
_HASH_RE = re.compile(r"####\s*([^\n]*)")
# "A:" only at a line start, or "Job A: 2000 hours" would be read as an answer marker.
_ANSWER_RE = re.compile(r"(?:\bthe answer is\b|\banswer\s*:|^[ \t]*A\s*:)\s*([^\n]*)", re.IGNORECASE | re.MULTILINE)
_STRICT_RE = re.compile(rf"(?:####|\bthe answer is)\s*:?\s*(-)?[$€£¥]?\s?(-)?({_NUM})(?!\d)", re.IGNORECASE)
_TOLERANCE = 1e-3


def _clean_latex(text: str) -> str:
    """Reduce the LaTeX models wrap answers in to plain text, so one number grammar serves both."""
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r" \1", text)
    text = text.replace("\\$", "$").replace("\\%", "%")
    text = re.sub(r"\\[!,;: ]", "", text)
    return text.replace("{", "").replace("}", "")


def _canonical(negative: bool, digits: str) -> str | None:
    """Exact parsing (Fraction) keeps 18.00 == 18 and large integers free of float rounding."""
    try:
        value = Fraction(digits.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    if negative:
        value = -value
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def normalise_number(s: str) -> str | None:
    """Canonical form of a lone number with optional currency, units or %; None if it is not one."""
    cleaned = re.sub(r"[$€£¥]", "", _clean_latex(s)).strip()
    match = _WHOLE_RE.fullmatch(cleaned)
    if match is None:
        return None
    return _canonical(bool(match.group(1)) != bool(match.group(2)), match.group(3))


def _numbers(text: str) -> list[str]:
    found = (_canonical(bool(m.group(1)) != bool(m.group(2)), m.group(3))
             for m in _TOKEN_RE.finditer(_clean_latex(text)))
    return [n for n in found if n is not None]


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}; braces are matched because LaTeX like \\frac nests them."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed")
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin + 1 : i]
    return text[begin + 1 :]


def _from_fragment(fragment: str, last: bool) -> str | None:
    """An answer from text that follows a marker: a box wins, then the whole fragment, then a number in it."""
    boxed = _last_boxed(fragment)
    if boxed is not None:
        fragment, last = boxed, True
    whole = normalise_number(fragment)
    if whole is not None:
        return whole
    numbers = _numbers(fragment)
    return (numbers[-1] if last else numbers[0]) if numbers else None


def extract_answer(text: str) -> str | None:
    """The model's final answer, preferring explicit markers so worked steps are not mistaken for it."""
    for pattern in (_FINAL_RE, _HASH_RE):
        for match in reversed(list(pattern.finditer(text))):
            answer = _from_fragment(match.group(1), last=False)
            if answer is not None:
                return answer
    boxed = _last_boxed(text)
    if boxed is not None:
        answer = _from_fragment(boxed, last=True)
        if answer is not None:
            return answer
    for match in reversed(list(_ANSWER_RE.finditer(text))):
        answer = _from_fragment(match.group(1), last=False)
        if answer is not None:
            return answer
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


def strict_extract(text: str) -> str | None:
    """Only the trained answer formats count, so strict accuracy measures format-following too."""
    matches = list(_STRICT_RE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return _canonical(bool(last.group(1)) != bool(last.group(2)), last.group(3))


def reference_answer(solution: str) -> str:
    """The gold number of a GSM8K solution, which by dataset convention follows its last '####'."""
    if "####" not in solution:
        raise ValueError(f"GSM8K reference has no '####' final-answer marker: {solution[-200:]!r}")
    answer = normalise_number(solution.rsplit("####", 1)[1].strip())
    if answer is None:
        raise ValueError(f"GSM8K reference's '####' is not followed by a number: {solution[-200:]!r}")
    return answer


def _gold(reference: str) -> str:
    if "####" in reference:
        return reference_answer(reference)
    answer = normalise_number(reference)
    if answer is None:
        raise ValueError(f"GSM8K reference is neither a solution with '####' nor a number: {reference!r}")
    return answer


def _same(prediction: str | None, gold: str) -> bool:
    return prediction is not None and abs(float(Fraction(prediction)) - float(Fraction(gold))) <= _TOLERANCE


def is_correct(prediction_text: str, reference: str) -> bool:
    """Flexible correctness; the tolerance absorbs rounding such as 0.333333 for 1/3."""
    return _same(extract_answer(prediction_text), _gold(reference))


def score(predictions: list[str], references: list[str]) -> dict:
    """Percent accuracy, flexible and strict, so runs with different output styles stay comparable."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")
    golds = [_gold(r) for r in references]
    flexible = sum(_same(extract_answer(p), g) for p, g in zip(predictions, golds))
    strict = sum(_same(strict_extract(p), g) for p, g in zip(predictions, golds))
    n = len(predictions)
    return {"accuracy": 100.0 * flexible / n, "strict_accuracy": 100.0 * strict / n, "n": n}


CHECKERS = ("ours", "math_verify")  # in this order in metrics and predictions, whatever order the config lists
MATH_VERIFY_INSTALL = "pip install 'math-verify[antlr4_9_3]'"  # 4.9.3: the antlr4 runtime hydra-core pins


def checkers(value: Any) -> tuple[str, ...]:
    """`task.eval.checker`, checked before the model loads. `ours` must stay: `accuracy` is the headline metric
    (task.eval.metric) and the paper's; other checkers are reported beside it, never instead of it."""
    if not isinstance(value, (list, tuple, ListConfig)):
        raise UserError(f"task.eval.checker={value!r} is not a list: write e.g. task.eval.checker=[ours,math_verify].")
    names = [str(name) for name in value]
    unknown = [name for name in names if name not in CHECKERS]
    if unknown:
        raise UserError(f"task.eval.checker: unknown {unknown}; choose from {list(CHECKERS)}.")
    if len(set(names)) != len(names):
        raise UserError(f"task.eval.checker={names} names a checker twice.")
    if "ours" not in names:
        raise UserError(f"task.eval.checker={names} lacks ours, which scores `accuracy` (the headline metric); "
                        f"write [ours,{','.join(names)}].")
    if "math_verify" in names:
        _require_math_verify()
    return tuple(name for name in CHECKERS if name in names)


def _require_math_verify() -> None:
    """Math-Verify parses LaTeX with an antlr4 parser for one runtime version; with another (or none) it fails on
    every LaTeX answer, and `parse` turns that failure into "no answer", i.e. a silently wrong score."""
    try:
        from math_verify import parse
    except ImportError as err:
        raise UserError(f"task.eval.checker lists math_verify, which is not installed ({err}): {MATH_VERIFY_INSTALL}.") from err
    if [str(x) for x in parse("$\\frac{1}{2}$")][:1] != ["1/2"]:
        raise UserError(f"task.eval.checker lists math_verify, which cannot parse LaTeX here (its antlr4 runtime is not "
                        f"4.9.3, 4.11.0 or 4.13.2): {MATH_VERIFY_INSTALL}.")


@contextmanager
def _quiet(logger_name: str):
    """Math-Verify warns once per row it finds no answer in; the predictions file records those rows instead."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def math_verify_verdicts(predictions: Sequence[str], references: Sequence[str]) -> list[tuple[bool, list[str] | None]]:
    r"""(correct, what Math-Verify extracted from the prediction) per row, as Math-Verify's own GSM8K task scores.

    Gold: the text after the reference's last '####' (the dataset's answer, e.g. "1,600"), parsed as a plain
    expression, exactly as math_verify/tasks.py's gsm8k does; a reference without '####' is taken whole (a bare
    number, as `_gold` accepts). Prediction: the whole generated text, parsed for LaTeX then plain expressions
    with Math-Verify's own extraction, because its value for comparison with published numbers is being that
    recipe, not ours. What that recipe does differently from ours (tests/evaluation/test_gsm8k.py holds cases):
    it knows no '####' marker, so "#### 5\nThen 9 more." is 9; it reads "$4.00 + $" as an inline LaTeX span;
    it takes the number after wording such as "the answer as a percentage:" even mid-solution; it finds nothing
    in "-$3". "$18.00", "1,234", "25%" and "\boxed{\$18}" agree with ours. A parse or comparison that times out
    (5 s, Math-Verify's SIGALRM timeout, main thread only) counts as wrong, as in Math-Verify.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, math_metric

    metric = math_metric(gold_extraction_target=(ExprExtractionConfig(),),
                         pred_extraction_target=(LatexExtractionConfig(), ExprExtractionConfig()))
    verdicts = []
    with _quiet("math_verify.metric"):
        for prediction, reference in zip(predictions, references, strict=True):
            gold = reference.rsplit("####", 1)[1].strip() if "####" in reference else reference.strip()
            value, extracted = metric([gold], [prediction])
            verdicts.append((value == 1.0, extracted[1] if extracted is not None else None))
    return verdicts


def _verdict_columns(row: dict[str, Any]) -> dict[str, Any]:
    """Readable columns beside the harness's per-row scores: the gold number, what we extracted, each verdict."""
    verdicts = {f"correct{'' if m == 'accuracy' else m.removeprefix('accuracy')}": row[m] == 1.0
                for m in ("accuracy", "accuracy_math_verify") if m in row}
    return {"reference": reference_answer(row["answer"]), "extracted": extract_answer(row["output"]), **verdicts}


class GSM8K(Evaluator):
    """Zero-shot GSM8K accuracy of the math task: the question alone in the chat template, greedy answer."""

    name = "gsm8k"

    def __init__(self, cfg: Any, task) -> None:
        self.checkers = checkers(cfg.task.eval.checker)
        self.rows = limited(task.eval_set(), cfg.eval.limit)
        self.eval_cfg = cfg.eval
        self.data = OmegaConf.to_container(cfg.task.eval.data, resolve=True)

    @staticmethod
    def check(cfg: Any) -> None:
        checkers(cfg.task.eval.checker)

    def material(self) -> dict[str, Any]:
        """The checkers are part of it, and Math-Verify's version, whose extraction rules change between releases."""
        versions = {"math_verify": version("math-verify")} if "math_verify" in self.checkers else {}
        return {"data": content_config(self.data), "n": len(self.rows), "max_new_tokens": int(self.eval_cfg.max_new_tokens),
                "checkers": list(self.checkers), "checker_versions": versions}

    def harness_spec(self):
        from .harness import Spec
        from .harness_tasks import utils

        checkers = list(self.checkers)
        metrics = {"accuracy": "accuracy", "strict_accuracy": "strict_accuracy"}
        if "math_verify" in checkers:
            metrics["accuracy_math_verify"] = "accuracy_math_verify"
        return Spec("d2lora_gsm8k", self.rows, overrides={
            "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": int(self.eval_cfg.max_new_tokens)},
            "process_results": lambda doc, results: utils.gsm8k_results(doc, results, checkers),
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics]},
            metrics=metrics, keep=("question", "answer"),
            annotate=_verdict_columns)
