"""W&B: secrets never reach a logged config, the mode is decided from the environment and a probe of the server,
configs flatten, adapters are artifacts with the warm-up -> adaptation lineage."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from d2lora_exp import adapters, recipe, tracking
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


# --- adapters as artifacts ----------------------------------------------------------------------------------------

def _artifacts(wandb_root: Path) -> list[tuple[str, dict]]:
    """(run name, artifact record) for every artifact the offline runs under `wandb_root` wrote into their .wandb
    files (what `wandb sync` replays), read back with W&B's own reader."""
    cli = Path(sys.executable).with_name("wandb")
    found = []
    for run_dir in sorted(wandb_root.glob("wandb/offline-run-*")):
        out = subprocess.run([str(cli), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                             check=True).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        name = next(r["run"]["display_name"] for r in records if r["type"] == "run")
        found += [(name, r["artifact"]) for r in records if r["type"] == "artifact"]
    return found


def _files(artifact: dict) -> dict[str, str]:
    return {e["path"]: e["digest"] for e in artifact["manifest"]["contents"]}


def _md5s(adapter_dir: Path) -> dict[str, str]:
    """The artifact digests (base64 MD5) W&B would record for an adapter's files."""
    return {name: base64.b64encode(hashlib.md5((adapter_dir / name).read_bytes()).digest()).decode()
            for name in tracking.ADAPTER_FILES}


def _own_cache(cfg, tmp_path: Path):
    """Runs of their own warm-up cache: whether this test's first run trains the warm-up must not depend on others."""
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "own_cache")
        cfg.model.name_or_path = str(tmp_path / "own_cache" / "models" / "tiny-llama")
    return cfg


@pytest.mark.e2e
def test_warmup_artifact_logged_once_by_its_run_and_used_by_every_adaptation_run(make_cfg, tmp_path):
    runs = [_own_cache(make_cfg("init=d2lora", *extra, out=out), tmp_path)
            for out, extra in (("first", ()), ("second", ("data_size=4",)))]
    first, second = (recipe.run(cfg) for cfg in runs)
    first_dir, second_dir = (Path(cfg.paths.output_dir) for cfg in runs)
    assert not first["warmup"]["reused"] and second["warmup"]["reused"]
    key, entry = first["warmup"]["key"], Path(first["warmup"]["adapter"])

    # The warm-up's own run logged its adapter once, files staged for `wandb sync` (the build directory is gone).
    [(producer, logged)] = _artifacts(first_dir / "wandb-warmup")
    assert producer == first["warmup"]["wandb_run"]["name"]
    assert (logged["name"], logged["type"], logged.get("use_after_commit", False)) == (f"warmup-{key}", "model", False)
    assert _files(logged) == _md5s(entry)
    for item in logged["manifest"]["contents"]:
        assert Path(item["local_path"]).read_bytes() == (entry / item["path"]).read_bytes()
    metadata = json.loads(logged["metadata"])
    assert metadata["key"] == key and metadata["adapter_digest"] == first["warmup"]["digest"]
    assert first["warmup"]["wandb_artifact"] == {"name": f"warmup-{key}", "digest": logged["digest"]}

    for result, run_dir, n in ((first, first_dir, 8), (second, second_dir, 4)):
        recorded = {a["name"]: (run, a) for run, a in _artifacts(run_dir) if a["type"] == "model"}  # not tables
        assert set(recorded) == {f"warmup-{key}", f"adapter-d2lora-sft-math-n{n}-s0"}
        run, used = recorded[f"warmup-{key}"]  # the same artifact (name and digest), to be used, not a new one
        assert run == result["run_name"] and used["use_after_commit"] and used["digest"] == logged["digest"]
        run, adapter = recorded[f"adapter-d2lora-sft-math-n{n}-s0"]
        adapter_dir = Path(result["adapt"]["adapter"])
        assert run == result["run_name"] and not adapter.get("use_after_commit", False) and adapter["type"] == "model"
        assert _files(adapter) == _md5s(adapter_dir)
        assert {Path(i["local_path"]) for i in adapter["manifest"]["contents"]} == {
            (adapter_dir / name).resolve() for name in tracking.ADAPTER_FILES}  # read in place at `wandb sync`
        metadata = json.loads(adapter["metadata"])
        assert {k: metadata[k] for k in ("init", "method", "task", "data_size", "seed", "config_hash")} == {
            "init": "d2lora", "method": "sft", "task": "math", "data_size": n, "seed": 0,
            "config_hash": result["config_hash"]}
        assert metadata["adapter_digest"] == result["adapt"]["digest"] == adapters.file_digest(adapter_dir)
        assert f"config-{result['config_hash']}" in adapter["aliases"]
        assert result["adapt"]["wandb_artifact"] == {"name": adapter["name"], "digest": adapter["digest"]}
    assert not (second_dir / "wandb-warmup").exists()  # the cached warm-up: no warm-up run, nothing logged again


@pytest.mark.e2e
def test_wandb_off_records_nothing_and_a_warmup_without_artifact_is_said(make_cfg, tmp_path, caplog):
    off = _own_cache(make_cfg("init=d2lora", "wandb.mode=disabled", out="off"), tmp_path)
    result = recipe.run(off)
    assert result["status"] == "complete"
    assert result["warmup"]["wandb_artifact"] is None and result["adapt"]["wandb_artifact"] is None
    assert not list(Path(off.paths.output_dir).glob("wandb*"))

    on = _own_cache(make_cfg("init=d2lora", out="on"), tmp_path)
    result = recipe.run(on)
    key = result["warmup"]["key"]
    assert result["warmup"]["reused"]
    assert (f"W&B: warmup-{key} was logged by no W&B run (built with W&B off, or before adapters were artifacts): "
            "this run records its use") in caplog.text
    used = {a["name"]: a for _, a in _artifacts(Path(on.paths.output_dir))}[f"warmup-{key}"]
    assert used["use_after_commit"] and _files(used) == _md5s(Path(result["warmup"]["adapter"]))
