"""W&B: secrets never reach a logged config, the mode is decided from the environment, configs flatten."""

from __future__ import annotations

from d2lora_exp import tracking


def test_scrub_drops_secret_keys_at_any_depth():
    config = {"model": {"name": "m", "hf_token": "hf_x"}, "wandb": {"api_key": "k", "project": "p"},
              "runs": [{"password": "p", "seed": 1}], "Secret_Sauce": 1, "tokenizer_name": "t",
              "eval": {"max_new_tokens": 64}, "WANDB_API_KEY": "k", "hfToken": "x", "api-key": "x", "secrets": [1],
              "db_passwd": "x", "pad_token_id": 2, "eos_token": "<e>"}
    clean = tracking.scrub(config)
    assert clean == {"model": {"name": "m"}, "wandb": {"project": "p"}, "runs": [{"seed": 1}], "tokenizer_name": "t",
                     "eval": {"max_new_tokens": 64}, "pad_token_id": 2, "eos_token": "<e>"}
    assert config["model"]["hf_token"] == "hf_x"  # the run's own config is not modified


def test_flatten_uses_dotted_keys():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_auto_mode_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert tracking.resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_mode("auto") == "disabled"
    assert tracking.resolve_mode("offline") == "offline"
