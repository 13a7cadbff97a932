"""The chat behaviour the D2LoRA warm-up trains: greedy replies to held-out chat prompts.

The warm-up is SFT on general chat exchanges (prompt + chosen reply, orpo-dpo-mix schema). Its direct
effect is measured here, apart from any task: on prompts of the same kinds but not in the warm-up data,
`chat_stop` is the share of replies the model closes itself (EOS before eval.max_new_tokens), and
`chat_exact` the share identical to the chosen reply. A base model that never saw the chat template
rambles on; a warmed-up one answers and stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset

from .. import chat
from ..data import sources
from ..fingerprint import content_config
from . import ranks
from .base import Evaluator, data_source, limited

CHAT_COLUMNS = {"prompt": str, "chosen": list}


def load(data_cfg, limit: int | None) -> Dataset:
    """The held-out chat set, schema-checked and cut to `limit` rows (checked before any model loads)."""
    ds = sources.load(data_cfg, "held-out chat prompts (orpo-dpo-mix schema)")
    sources.require_columns(ds, CHAT_COLUMNS, "held-out chat prompts (orpo-dpo-mix schema)")
    return limited(ds, limit)


def reference(chosen: list[dict]) -> str:
    return next(m["content"] for m in reversed(chosen) if m["role"] == "assistant")


class ChatBehaviour(Evaluator):
    name = "chat"

    def __init__(self, cfg: Any, task) -> None:
        self.data = data_source(cfg, "chat_data", self.name, "held-out chat prompts: set eval.chat_data={path: ...} to a "
                                "file in the orpo-dpo-mix schema (the miniature worlds ship one).")
        self.rows = load(self.data, cfg.eval.limit)
        self.eval_cfg = cfg.eval

    def material(self) -> dict[str, Any]:
        return {"data": content_config(self.data), "n": len(self.rows), "max_new_tokens": int(self.eval_cfg.max_new_tokens)}

    def evaluate(self, model, tokenizer, out_dir: Path) -> dict[str, float] | None:
        rows = self.rows
        prompts = [chat.user_prompt(tokenizer, p) for p in rows["prompt"]]
        mine = ranks.share([len(p) for p in prompts])  # every row with one process
        replies = ranks.generate(model, tokenizer, [prompts[i] for i in mine], self.eval_cfg.batch_size,
                                 self.eval_cfg.max_new_tokens, "eval chat")
        self.computed = len(mine)
        gathered = ranks.gather(mine, replies, len(prompts))
        if gathered is None:  # not the main rank: it scores and writes
            return None
        outputs, stopped = [o for o, _ in gathered], [s for _, s in gathered]
        refs = [reference(c) for c in rows["chosen"]]
        exact = [o.strip() == r.strip() for o, r in zip(outputs, refs)]
        self.write_predictions(out_dir, [{"prompt": p, "reference": r, "output": o, "stopped": s, "exact": e}
                                         for p, r, o, s, e in zip(rows["prompt"], refs, outputs, stopped, exact)])
        n = len(outputs)
        return {"chat_stop": 100.0 * sum(stopped) / n, "chat_exact": 100.0 * sum(exact) / n, "chat_n": n}
