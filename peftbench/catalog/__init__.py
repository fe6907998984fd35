"""Model architectures as plain config data, so planning a 7B model needs no download. No torch import.

Each `<name>.json` here is the model's Hugging Face `config.json` (the architecture fields) plus a `_peftbench`
block with its hub id and published parameter count (tests build every entry on the meta device and check the
count). `resolve` turns what a user types into a config dict: a catalog name, a hub id the catalog knows, a
built-in peftbench model, a local `config.json` (or a directory holding one), or a hub id whose config is in the
local hub cache or can be fetched now.
"""

from __future__ import annotations

import json
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


def resolve(name: str, overrides: dict[str, Any] | None = None, revision: str | None = None,
            suite_dir: Path | None = None) -> ModelSpec:
    """The config for `name`, or a one-line PeftbenchError (with a 'did you mean' for near-miss catalog names)."""
    catalog = entries()
    key = name.strip()
    if key.lower() in catalog:
        return ModelSpec(key.lower(), "catalog", catalog[key.lower()])
    if key.lower() in _by_hub_id():
        short = _by_hub_id()[key.lower()]
        return ModelSpec(short, "catalog", catalog[short])
    if key.startswith("builtin:"):
        from ..models import builtin_config

        return ModelSpec(key, "builtin", builtin_config(key, overrides))
    local = Path(key).expanduser()
    if not local.is_absolute() and not local.exists() and suite_dir is not None and (suite_dir / local).exists():
        local = suite_dir / local  # relative to the suite file, as model and dataset paths are
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
    from ..models import hub_config

    return json.loads(hub_config(repo, revision, note=" (not in the catalog)").read_text())
