"""World v5's shipped model and preset: an instruct model of world v5 (the paper warms up an Instruct model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from d2lora_exp import recipe, tiny_model
from d2lora_exp.config import bundled_model

V5 = Path(bundled_model("tiny-world-v5"))


def test_the_shipped_v5_model_is_world_v5s_pretrained_model_after_the_instruct_stage():
    info = json.loads((V5 / "instruct.json").read_text())
    assert info["world"] == 5 and info["base_pretrain"]["world"] == 5 and info["seed"] == 0
    stop = info["held_out_chat_stop"]
    assert stop["base"] < 10 and stop["instruct"] >= stop["base"] + 40
    copied = info["base_pretrain"]["probe"]
    # Copying the question's numbers is the skill v5's solutions need: operands ~100%, quoted spans 58.5% (the number
    # after an event's verb is copied far less often than the one after "has": README, "World v5").
    assert copied["copy_operand"] > 90 and copied["copy_restate"] > 40 and copied["computed"] > 90
    config = AutoConfig.from_pretrained(V5)
    assert all(getattr(config, k) == v for k, v in tiny_model.ARCHS["world"].items())


@pytest.mark.e2e
def test_the_v5_preset_runs_world_v5_on_a_model_that_closes_its_turn_before_any_warmup(make_cfg, tmp_path):
    """data_size=0 under experiment=miniature_v5: LoRA is the instruct model as shipped (v3's base: chat_stop 0), and
    the task's problems are world v5's (a step of a reference solution quotes its question)."""
    run = recipe.run(make_cfg("experiment=miniature_v5", "wandb.mode=disabled", "init=lora", "method=sft",
                              "data_size=0", "eval.evaluators=[task,chat]", "eval.limit=60", fast=False))
    assert run["config"]["data"]["build"]["world"] == 5 and run["model"] == "tiny-world-v5"
    assert run["metrics"]["chat_stop"] >= 40 and run["metrics"]["eval_n"] == 60
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions_gsm8k.jsonl").read_text().splitlines()]
    assert all(r["answer"].split(": ")[0] in r["question"] for r in rows)
