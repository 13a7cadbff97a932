"""DPO and ORPO train on the tokens the model writes: each reply is tokenized together with its prompt.

Why it can break: a tokenizer that puts a space before every text (world v5's word-level one) turns a reply that
continues earlier steps ("...\\nStep 2: ...") into " Step" when tokenized alone, while the model, after the newline,
writes "Step". TRL 1.16's DPO and ORPO tokenize prompt + reply as one string and cut the reply off at the prompt's
length; a TRL that tokenized replies alone would train preference pairs on tokens the model never produces, with no
error. These tests read the sequences the trainers built."""

from __future__ import annotations

import pytest

from d2lora_exp import modeling
from d2lora_exp.phases import adapt
from d2lora_exp.phases.prepare import prepare

pytestmark = pytest.mark.e2e


def _trainer(make_cfg, tmp_path, method: str):
    cfg = make_cfg("experiment=miniature_v5", f"method={method}", "data_size=24", "method.num_train_epochs=1",
                   "eval.limit=4", "wandb.mode=disabled")
    plan = prepare(cfg, tmp_path / method)
    model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)
    model, _ = adapt.start_adapter(plan, model, None)
    return plan, plan.method.build_trainer(model, plan.tokenizer, plan.train_rows, plan.adapt_config, cfg.method, [])


def _sequences(method: str, row: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, chosen-reply ids) of one row as the trainer will feed them."""
    if method == "dpo":
        return row["prompt_ids"], row["chosen_ids"]
    prompt = [i for i, label in zip(row["chosen_input_ids"], row["chosen_labels"]) if label == -100]
    return prompt, row["chosen_input_ids"][len(prompt):]


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_replies_are_tokenized_with_their_prompts(make_cfg, tmp_path, method):
    plan, trainer = _trainer(make_cfg, tmp_path, method)
    tokenizer = plan.tokenizer
    assert tokenizer("x", add_special_tokens=False).input_ids != tokenizer("\nx", add_special_tokens=False).input_ids[1:], \
        "the premise: this tokenizer writes a text's first word differently from the same word after a newline"
    continuing = 0
    for source, row in zip(plan.train_rows, trainer.train_dataset, strict=True):  # TRL dropped no row
        prompt_ids, chosen_ids = _sequences(method, row)
        joint = tokenizer(source["prompt"] + source["chosen"], add_special_tokens=False).input_ids
        # What the model sees during SFT and at generation: the joint tokenization (with EOS ending the reply).
        assert prompt_ids + chosen_ids == joint + [tokenizer.eos_token_id] * (joint[-1] != tokenizer.eos_token_id)
        assert prompt_ids == tokenizer(source["prompt"], add_special_tokens=False).input_ids
        if source["prompt"].endswith("\n"):  # a reply that continues earlier steps: "Step", as after any newline
            continuing += 1
            assert tokenizer.convert_ids_to_tokens(chosen_ids[0]) == "Step"
    assert continuing, "no row continued earlier steps: the case this test is for was not exercised"
