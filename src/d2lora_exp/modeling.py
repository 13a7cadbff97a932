"""Load the base model and tokenizer: a hub id, a local directory, or the locally built tiny model.

Access problems (gated repo without a token, no network, wrong id) are turned into one message that
names the fix, and checked before any data is processed or any training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .build_once import MARKER
from .errors import UserError
from .files import is_local_path
from .fingerprint import file_sha256, stable_hash


def identity(model_cfg: Any, source: str, dtype: str) -> dict[str, Any]:
    """The base model as a cache key sees it: a local directory (a built, shipped or downloaded model) by its
    contents, wherever it lives; a hub model by its id and revision."""
    local = Path(os.path.expanduser(source))
    model = ({"content": _local_fingerprint(local)} if local.is_dir()
             else {"name_or_path": model_cfg.name_or_path, "revision": model_cfg.get("revision")})
    return {**model, "dtype": dtype, "attn_implementation": model_cfg.get("attn_implementation")}


def _local_fingerprint(path: Path) -> str:
    """Digest of a model directory: the file digests build_once recorded, else every config/tokenizer file in full
    and each weight file by its size and first and last MiB (reading 16 GB per run would cost a minute)."""
    marker = path / MARKER
    if marker.is_file():
        return stable_hash(json.loads(marker.read_text())["files"])
    parts: dict[str, Any] = {}
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        if f.stat().st_size <= 2 << 20:
            parts[f.name] = file_sha256(f)
        else:
            with open(f, "rb") as handle:
                head = handle.read(1 << 20)
                handle.seek(-(1 << 20), os.SEEK_END)
                parts[f.name] = [f.stat().st_size, hashlib.sha256(head).hexdigest(), hashlib.sha256(handle.read()).hexdigest()]
    return stable_hash(parts)


def fingerprint_method(path: Path) -> str:
    """How `_local_fingerprint` digests the model directory `path`, in words (metrics.json's provenance says it)."""
    if (path / MARKER).is_file():
        return f"every file's full sha256, as recorded by build_once ({MARKER})"
    return "full sha256 of files up to 2 MiB; size + sha256 of the first and last MiB of larger (weight) files"


BUILD_DIR = "models"  # model.build writes only under <paths.cache_dir>/models/


def ensure_available(model_cfg: Any, cache_dir: str | os.PathLike) -> str:
    """Build the embedded model if needed and check hub access; return what to pass to from_pretrained."""
    name = str(model_cfg.name_or_path)
    if model_cfg.get("build"):
        if model_cfg.build != "tiny_llama":
            raise UserError(f"unknown model.build={model_cfg.build!r}: the only builder is tiny_llama.")
        check_build_location(name, Path(cache_dir))
        from . import tiny_model

        tiny_model.build(name)
        return name
    if is_local_path(name):
        if not os.path.isdir(os.path.expanduser(name)):
            raise UserError(f"model.name_or_path={name!r} is not a directory. Point it at a saved model or a hub id.")
        return os.path.expanduser(name)
    if model_cfg.get("gated"):
        _check_gated_access(name, model_cfg.get("revision"))
    return name


def check_build_location(name: str, cache_dir: Path) -> None:
    """A builder writes the directory it is given, and replaces whole whatever is there without its own record
    (build_once), so it builds only under the project's cache: a mistyped model.name_or_path under `experiment=smoke`
    must neither become a new random model that a run silently trains, nor replace a real model directory."""
    models = (Path(os.path.expanduser(cache_dir)) / BUILD_DIR).resolve()
    target = Path(os.path.expanduser(name)).resolve()
    if target != models and target.is_relative_to(models):
        return
    built = sorted(str(p.parent) for p in models.glob(f"*/{MARKER}"))
    hint = (f"the models built there are {', '.join(built)}" if built
            else "leave model.name_or_path at its default to build it there")
    raise UserError(f"model.build=tiny_llama builds the random smoke model only under {models}/ and "
                    f"model.name_or_path={name!r} is outside it: {hint}; to load the saved model at {name!r} "
                    "instead, set model.build=null.")


def _check_gated_access(repo_id: str, revision: str | None) -> None:
    """A gated model needs a token unless its files are already in the local HF cache."""
    from huggingface_hub import get_token, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return
    if get_token() is None:
        raise UserError(
            f"{repo_id} is a gated model and no Hugging Face token is set. Accept its licence at "
            f"https://huggingface.co/{repo_id}, then `export HF_TOKEN=...` (or run `hf auth login`); "
            "or point model.name_or_path at a local copy."
        )


def load_tokenizer(source: str, model_cfg: Any):
    from transformers import AutoTokenizer

    tokenizer = _hub_call(
        AutoTokenizer.from_pretrained, source, revision=model_cfg.get("revision"),
        trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
    )
    if tokenizer.chat_template is None:
        raise UserError(
            f"the tokenizer of {source} has no chat template; the tasks are zero-shot chat prompts. "
            "Use an instruct/chat model or one whose tokenizer_config.json sets chat_template."
        )
    if tokenizer.pad_token is None:
        # Llama-3 has no pad token; padding positions are masked, so any id works; eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(source: str, model_cfg: Any):
    """The model's config alone (no weights). A local config.json that is truncated, empty or `{}` (a copy cut short,
    a full disk) fails here in one line naming the file, not as a traceback from the tokenizer or the weights."""
    from transformers import AutoConfig

    try:
        return _hub_call(AutoConfig.from_pretrained, source, revision=model_cfg.get("revision"),
                         trust_remote_code=bool(model_cfg.get("trust_remote_code", False)))
    except (OSError, ValueError) as err:
        local = Path(os.path.expanduser(source))
        if not local.is_dir():
            raise
        raise UserError(f"{local / 'config.json'} is missing or not a valid model config "
                        f"({str(err).splitlines()[0]}): copy the model directory again, or point model.name_or_path "
                        "at a complete one.") from err


def check_target_modules(config: Any, source: str, target_modules: Any) -> None:
    """LoRA target module names the model lacks fail here, from the model's config alone (its skeleton is built
    on the meta device: no weights are read), instead of inside PEFT after the weights have loaded."""
    if isinstance(target_modules, str):  # "all-linear" or a regex: PEFT resolves it
        return
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules()}
    missing = sorted(set(target_modules) - names)
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules() if m.__class__.__name__ == "Linear"})
        raise UserError(f"lora.target_modules {missing} are not modules of {source}; its linear layers are {linear} "
                        "(or use lora.target_modules=all-linear).")


def load_model(source: str, model_cfg: Any, device: str, dtype):
    """The base model on `device` in `dtype`; on CUDA loaded straight there (speed.load_kwargs)."""
    from transformers import AutoModelForCausalLM

    from .speed import load_kwargs

    placement = load_kwargs(device, dtype)
    model = _hub_call(
        AutoModelForCausalLM.from_pretrained, source, revision=model_cfg.get("revision"),
        attn_implementation=model_cfg.get("attn_implementation") or None,
        trust_remote_code=bool(model_cfg.get("trust_remote_code", False)), **placement,
    )
    return model if "device_map" in placement else model.to(device)


def _hub_call(fn, source: str, **kwargs):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return fn(source, **kwargs)
    except GatedRepoError as err:
        raise UserError(
            f"access to {source} is gated and your token is not authorised for it: accept the licence at "
            f"https://huggingface.co/{source} with the account of HF_TOKEN."
        ) from err
    except RepositoryNotFoundError as err:
        raise UserError(f"no model {source!r} on the hub (or it is private): check model.name_or_path.") from err
    except OSError as err:
        if Path(source).exists():
            raise
        raise UserError(
            f"could not load {source!r} ({err.__class__.__name__}: {str(err).splitlines()[0]}). Without network, "
            "download it where there is one and set model.name_or_path to the local directory."
        ) from err
