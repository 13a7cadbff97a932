"""W&B: secrets never reach a logged config, the mode is decided from the environment and a probe of the server,
configs flatten."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from omegaconf import OmegaConf

from d2lora_exp import tracking
from d2lora_exp.errors import UserError


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


@pytest.fixture
def wandb_server(monkeypatch):
    """A local HTTP server standing in for the W&B API (any HTTP answer counts, here 501 to every HEAD)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://user:pw@127.0.0.1:{server.server_port}")
    yield server
    server.shutdown()
    server.server_close()


def _wandb(mode: str, enabled: bool = True):
    return OmegaConf.create({"mode": mode, "enabled": enabled, "probe_timeout_s": 2})


def test_mode_follows_the_environment_and_the_server(monkeypatch, tmp_path, wandb_server):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.decide_mode(_wandb("auto")) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert tracking.decide_mode(_wandb("auto")) == "online"  # the server answered
    assert tracking.decide_mode(_wandb("online")) == "online"
    assert tracking.decide_mode(_wandb("auto", enabled=False)) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.decide_mode(_wandb("auto")) == "disabled"
    assert tracking.decide_mode(_wandb("offline")) == "offline"
    assert tracking.base_url() == f"http://127.0.0.1:{wandb_server.server_port}"  # no credentials in a log line


def test_unreachable_server_auto_goes_offline_online_is_refused(monkeypatch, tmp_path, wandb_server, caplog):
    port = wandb_server.server_port
    wandb_server.shutdown()
    wandb_server.server_close()
    monkeypatch.setenv("WANDB_API_KEY", "k")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    url = f"http://127.0.0.1:{port}"
    assert tracking.decide_mode(_wandb("auto")) == "offline"
    assert f"W&B server {url} unreachable within 2s: this run logs offline" in caplog.text
    with pytest.raises(UserError, match=rf"W&B server {url} unreachable within 2s \(wandb.mode=online\): use "
                                        r"wandb.mode=offline \(sync later with `wandb sync`\) or auto\.$"):
        tracking.decide_mode(_wandb("online"))
    monkeypatch.setenv("WANDB_MODE", "online")  # set explicitly: respected, so refused as well
    with pytest.raises(UserError, match=r"\(WANDB_MODE=online\).*or auto, and unset WANDB_MODE\.$"):
        tracking.decide_mode(_wandb("auto"))


def test_a_server_that_never_answers_is_given_up_after_the_timeout(monkeypatch):
    with socket.socket() as listening:  # accepts the connection (backlog), never replies
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        started = time.perf_counter()
        assert not tracking.reachable(f"http://127.0.0.1:{listening.getsockname()[1]}", 0.5)
        assert time.perf_counter() - started < 2


def test_a_failing_wandb_call_is_raised_unless_a_stop_signal_came_first():
    """On SLURM the stop signal also reaches W&B's service process: after it, a dead W&B must not turn the
    interruption (checkpoint saved, status interrupted) into a failure; before it, a W&B error is an error."""
    import os
    import signal

    from d2lora_exp import interrupt

    def dead(*args, **kwargs):
        raise ConnectionResetError("Connection lost")

    interrupt.reset()
    with pytest.raises(ConnectionResetError):
        tracking.after_stop("log", dead, {"loss": 1.0})
    try:
        with interrupt.guard():
            os.kill(os.getpid(), signal.SIGTERM)
            assert tracking.after_stop("log", dead, {"loss": 1.0}) is None
    finally:
        interrupt.reset()


def test_an_unknown_wandb_mode_in_the_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "ofline")
    with pytest.raises(UserError, match="WANDB_MODE='ofline' is not a W&B mode: use one of online, offline, disabled"):
        tracking.decide_mode(OmegaConf.create({"enabled": True, "mode": "auto", "probe_timeout_s": 1}))
