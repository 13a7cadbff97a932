"""lm-evaluation-harness as an evaluation engine: the paper's evaluations as tasks this project ships, and any of
the harness's own tasks after any run.

`eval.engine=hf` runs the shipped tasks (`harness_tasks/*.yaml`: prompts, generation settings, scoring) through the
harness's `hf` engine wrapped around the in-memory model (adapter attached, nothing written or reloaded);
`eval.engine=vllm` through its `vllm` engine with the saved LoRA adapter (GPUs; `max_lora_rank` is read from the
adapter, so the rank-2r adapters of pissa/olora/corda load). The rows are the evaluator's own, loaded and checked
before the model (`custom_dataset`), so both engines score exactly the same examples. `eval.harness.tasks` runs the
harness's own tasks (gsm8k, arc_easy, ...) with their prompts and few-shot settings; their metrics are named
`harness/<task>/<metric>` and kept on the harness's 0-1 scale, so they compare with published harness numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from ..errors import UserError

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "harness_tasks"
ENGINES = ("hf", "vllm")
FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class Spec:
    """One shipped task bound to an evaluator's rows: what the harness runs, and how its metrics are named here."""

    task: str  # the shipped task (harness_tasks/<task>.yaml)
    rows: Dataset
    overrides: dict[str, Any] = field(default_factory=dict)  # run settings: max_gen_toks, the configured prompt
    metrics: dict[str, str] = field(default_factory=dict)  # harness metric -> this project's metric (percent)
    keep: tuple[str, ...] = ()  # doc fields copied into each prediction row
    n_metric: str = "eval_n"  # the metric holding the number of rows scored
    annotate: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # more columns for each prediction row


def harness_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _load_yaml(path: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return dict(load_yaml(path, resolve_func=True))


def shipped_config(spec: Spec) -> dict[str, Any]:
    """The shipped YAML with the run's rows and settings: the prompt and scoring stay those of the file."""
    cfg = _load_yaml(TASKS_DIR / f"{spec.task}.yaml")
    rows = spec.rows
    cfg.update(spec.overrides)
    cfg["custom_dataset"] = lambda **_: DatasetDict({"test": rows})
    cfg.pop("dataset_kwargs", None)
    return cfg


@lru_cache(maxsize=1)
def _all_tasks():
    """The harness's task index (~8 s: it reads every task YAML it ships), built once per process and only when
    `eval.harness.tasks` asks for its tasks."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def own_configs(names: list[str], data_files: dict[str, Any]) -> list[dict[str, Any]]:
    """The harness's own task configs, with local data files where given (the hub may be unreachable)."""
    index = _all_tasks().task_index
    unknown = [n for n in names if n not in index]
    if unknown:
        raise UserError(f"eval.harness.tasks: {unknown} are not lm-evaluation-harness tasks (e.g. gsm8k, arc_easy; "
                        "`lm_eval ls tasks` lists them).")
    groups = [n for n in names if index[n].yaml_path is None or index[n].kind.name not in ("TASK",)]
    if groups:
        raise UserError(f"eval.harness.tasks: {groups} are groups or tags; name their tasks one by one.")
    extra = sorted(set(data_files) - set(names))
    if extra:
        raise UserError(f"eval.harness.data_files names {extra}, which eval.harness.tasks={names} does not run.")
    configs = []
    for name in names:
        cfg = _load_yaml(index[name].yaml_path)
        if name in data_files:
            cfg.update(_local_data(name, data_files[name]))
            given = cfg["dataset_kwargs"]["data_files"]
            scored = cfg.get("test_split") or cfg.get("validation_split")
            if scored not in given:
                raise UserError(f"eval.harness.data_files.{name} has no `{scored}` split, the one {name} scores.")
            for split in ("training_split", "validation_split", "fewshot_split"):
                if cfg.get(split) not in given:  # few-shot examples then come from the next split the harness has
                    cfg[split] = None
        configs.append(cfg)
    return configs


def _local_data(task: str, files: Any) -> dict[str, Any]:
    """`{split: path}` -> the harness's dataset_path/dataset_kwargs for local files of one format."""
    if not isinstance(files, dict) or not files:
        raise UserError(f"eval.harness.data_files.{task} must map split names to files, e.g. {{test: data/test.jsonl}}.")
    paths = {split: Path(str(p)).expanduser().resolve() for split, p in files.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(f"eval.harness.data_files.{task}: no such file {missing[0]}")
    formats = {FORMATS.get(p.suffix) for p in paths.values()}
    if None in formats or len(formats) != 1:
        raise UserError(f"eval.harness.data_files.{task}: files must share one format of {sorted(FORMATS)}")
    return {"dataset_path": formats.pop(), "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(p) for split, p in paths.items()}}}


def build_tasks(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Task objects by name; building one loads its data, so a bad file fails here, before any model."""
    from lm_eval.tasks import TaskManager

    quiet_harness_logs()
    try:
        loaded = TaskManager(include_defaults=False).load(configs)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"lm-evaluation-harness could not load the data of {[c['task'] for c in configs]}: "
                        f"{type(err).__name__}: {err}") from err
    return dict(loaded["tasks"])


# Messages the harness logs on every call that do not apply to how this project calls it: tasks get their rows
# through `custom_dataset` (no --metadata), and the hf engine is handed the in-memory model on purpose.
_NOT_FOR_US = ("Custom kwargs can be passed", "For example --metadata", "`pretrained` model kwarg is not of type",
               "Passed an already-initialized model through `pretrained`")


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not any(text in message for text in _NOT_FOR_US)


def quiet_harness_logs() -> None:
    """Drop the harness's log lines listed in _NOT_FOR_US (its other warnings stay)."""
    for name in ("lm_eval", "lm_eval.api.task", "lm_eval.models.huggingface", "lm_eval.evaluator"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quiet) for f in logger.filters):
            logger.addFilter(_Quiet())


@dataclass
class Engine:
    """The harness's model wrapper for this run, built on first use: `hf` around the in-memory model, `vllm` from
    the model's files plus the saved adapter."""

    name: str
    model: Any
    tokenizer: Any
    batch_size: int
    max_new_tokens: int
    model_source: str
    dtype_name: str
    adapter_dir: Path | None = None
    vllm_args: dict[str, Any] = field(default_factory=dict)
    _lm: Any = None

    def lm(self):
        quiet_harness_logs()
        if self._lm is None:
            self._lm = self._hf() if self.name == "hf" else self._vllm()
        return self._lm

    def _hf(self):
        from .generation import end_token_ids
        from .ranks import data_parallel

        # The chat template carries the one BOS (chat.py): the harness must not add a second. Under several ranks
        # each computes its share of the requests (ranks.py).
        lm = data_parallel(_end_tokens_hflm())(pretrained=self.model, tokenizer=self.tokenizer,
                                               batch_size=self.batch_size, add_bos_token=False,
                                               max_gen_toks=self.max_new_tokens)
        lm.end_ids = end_token_ids(self.model, self.tokenizer)
        return lm

    def _vllm(self):
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(**vllm_args(self.model_source, self.dtype_name, self.adapter_dir, self.max_new_tokens, self.vllm_args))


@lru_cache(maxsize=1)
def _end_tokens_hflm():
    """The harness's hf engine, stopping each row at any end token (generation.end_token_ids), as this project's own
    generation does.

    lm-eval 0.4.13's HFLM.generate_until calls `model.generate` without `eos_token_id`, so a row stops only at what the
    model's generation config lists; its `until` holds the tokenizer's EOS as text, which ends a batch only when every
    row has it and which cannot cut a row's reply, because the reply is decoded without special tokens first. A model
    whose tokenizer EOS the generation config does not list would then run on past it, and the text after would be
    scored."""
    from lm_eval.models.huggingface import HFLM

    class EndTokensHFLM(HFLM):
        end_ids: list[int] = []

        def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
            generation_kwargs.setdefault("eos_token_id", self.end_ids or None)
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    return EndTokensHFLM


def adapter_rank(adapter_dir: Path) -> int:
    """The rank vLLM must accept: the saved adapter's own (2r for the converted pissa/olora/corda adapters)."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    ranks = [int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def vllm_args(model_source: str, dtype_name: str, adapter_dir: Path | None, max_new_tokens: int,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Arguments of the harness's vLLM engine: base weights from their files, the adapter as a LoRA request."""
    args: dict[str, Any] = {"pretrained": model_source, "dtype": dtype_name, "add_bos_token": False,
                            "max_gen_toks": max_new_tokens, "batch_size": "auto"}
    if adapter_dir is not None:
        args.update(lora_local_path=str(adapter_dir), max_lora_rank=adapter_rank(adapter_dir))
    return {**args, **extra}


def evaluate(tasks: dict[str, Any], engine: Engine, apply_chat_template: bool, num_fewshot: int | None = None,
             fewshot_as_multiturn: bool = True, limit: int | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    """(results by task: the harness's `results` entries, samples by task).

    The harness's lower-level `evaluate` on tasks built before the model: `simple_evaluate` would index every
    task the harness ships (~8 s) and collect environment information (`pip list`, ...) on each call. Few-shot
    settings follow `simple_evaluate`'s rules (a task whose YAML sets 0 shots keeps 0)."""
    from lm_eval.evaluator import evaluate as harness_evaluate

    for task in tasks.values():
        if num_fewshot is not None and task.get_config("num_fewshot") != 0:
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=0)
    out = harness_evaluate(lm=engine.lm(), task_dict={"tasks": dict(tasks), "groups": {}, "group_map": {}},
                           limit=limit, bootstrap_iters=0, log_samples=True, apply_chat_template=apply_chat_template,
                           fewshot_as_multiturn=fewshot_as_multiturn, verbosity=None)
    return out["results"], out.get("samples", {})


def metric_values(result: dict[str, Any]) -> dict[str, float]:
    """`{"acc,none": 0.5, "acc_stderr,none": "N/A", "alias": ...}` -> `{"acc": 0.5}`; filters other than `none`
    stay in the name (`exact_match,strict-match`), as the harness prints them."""
    values = {}
    for key, value in result.items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
            continue
        metric, flt = key.split(",", 1)
        values[metric if flt == "none" else key] = float(value)
    return values


def prediction_rows(samples: list[dict[str, Any]], keep: tuple[str, ...], metrics: list[str],
                    task: str | None = None) -> list[dict[str, Any]]:
    """One row per example, in the data's order: the doc fields asked for, the model's reply (generation tasks) or
    the log-likelihood of each choice (multiple choice), and the per-row score of each metric."""
    rows = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        responses = sample.get("filtered_resps", sample.get("resps"))
        row: dict[str, Any] = {"task": task} if task else {}
        if sample.get("filter", "none") != "none":
            row["filter"] = sample["filter"]
        row.update({k: sample["doc"].get(k) for k in keep})
        if sample.get("arguments") and isinstance(responses, list) and responses and isinstance(responses[0], (list, tuple)):
            row["logprobs"] = [float(r[0]) for r in responses]
        else:
            row["output"] = (responses[0] if isinstance(responses, list) else responses).strip()
        row.update({m: sample[m] for m in metrics if m in sample})
        rows.append(row)
    return rows


class HarnessTasks:
    """`eval.harness.tasks`: the harness's own tasks, run after the run's evaluators with the harness's prompts and
    the configured chat-template and few-shot settings; metrics `harness/<task>/<metric>` on the harness's scale."""

    name = "harness"
    computed = 0  # documents this rank computed in the latest evaluation (ranks.py)

    def __init__(self, cfg: Any) -> None:
        from omegaconf import OmegaConf

        settings = OmegaConf.to_container(cfg.eval.harness, resolve=True)
        self.names = [str(n) for n in settings["tasks"]]
        self.data_files = settings.get("data_files") or {}
        self.settings = {k: settings.get(k) for k in ("apply_chat_template", "num_fewshot", "fewshot_as_multiturn")}
        self.limit = cfg.eval.limit
        self.tasks = build_tasks(own_configs(self.names, self.data_files))  # loads their data now, before the model

    def material(self) -> dict[str, Any]:
        from ..fingerprint import file_sha256

        files = {task: {split: file_sha256(Path(str(p)).expanduser()) for split, p in splits.items()}
                 for task, splits in self.data_files.items()}
        return {"tasks": self.names, "data_files": files, "limit": self.limit, **self.settings,
                "lm_eval": harness_version()}

    def predictions_path(self, out_dir: Path) -> Path:
        return out_dir / f"predictions_{self.name}.jsonl"

    def evaluate_with(self, engine: Engine, out_dir: Path) -> dict[str, float] | None:
        from .. import dist
        from ..files import write_jsonl
        from .ranks import docs_computed

        results, samples = evaluate(self.tasks, engine, bool(self.settings["apply_chat_template"]),
                                    num_fewshot=self.settings["num_fewshot"],
                                    fewshot_as_multiturn=bool(self.settings["fewshot_as_multiturn"]), limit=self.limit)
        metrics: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for task in self.names:
            values = metric_values(results[task])
            metrics.update({f"harness/{task}/{m}": v for m, v in values.items()})
            metrics[f"harness/{task}/n"] = len(samples.get(task, []))
            rows += prediction_rows(samples.get(task, []), (), [m.split(",")[0] for m in values], task=task)
        docs = sum(len({s["doc_id"] for s in samples.get(task, [])}) for task in self.names)
        self.computed = docs_computed(engine.lm(), docs)
        if not dist.is_main():  # the main rank holds the same results and writes them
            return None
        write_jsonl(self.predictions_path(out_dir), rows)
        return metrics
