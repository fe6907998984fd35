"""The model catalog: every peftbench/catalog/<name>.json is an official config.json plus a `_peftbench` block.

Each config is built into its causal-LM class on the meta device (no weights are allocated, so even the 70B
entries take well under a second) and its parameter count must equal the published count in `_peftbench.params`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CATALOG = Path(__file__).resolve().parents[2] / "peftbench" / "catalog"
CATALOG_FILES = sorted(CATALOG.glob("*.json"))

REQUIRED_CONFIG_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)
REQUIRED_META_KEYS = {"hub_id": str, "params": int, "source": str}


def _load(path: Path) -> tuple[dict, dict]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict), f"{path.name}: top level must be an object"
    config = dict(data)
    meta = config.pop("_peftbench", None)
    assert isinstance(meta, dict), f"{path.name}: missing the `_peftbench` block"
    return config, meta


def test_catalog_is_not_empty():
    assert CATALOG_FILES, f"no *.json files in {CATALOG}"


@pytest.mark.parametrize("path", CATALOG_FILES, ids=[p.stem for p in CATALOG_FILES])
def test_catalog_entry_has_required_keys(path: Path):
    config, meta = _load(path)
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    assert not missing, f"{path.name}: config lacks {missing}"
    assert isinstance(config["architectures"], list) and config["architectures"], path.name
    assert any(arch.endswith("ForCausalLM") for arch in config["architectures"]), path.name
    for key, kind in REQUIRED_META_KEYS.items():
        assert key in meta, f"{path.name}: `_peftbench` lacks {key!r}"
        value = meta[key]
        assert isinstance(value, kind) and not isinstance(value, bool), f"{path.name}: `_peftbench.{key}` is {value!r}"
    assert "/" in meta["hub_id"], f"{path.name}: hub_id {meta['hub_id']!r} is not owner/name"
    assert meta["params"] > 0
    assert meta["source"].strip()
    # Small, human-readable files: indent-2 JSON.
    assert path.read_text().startswith('{\n  "'), f"{path.name}: write it with indent=2"


@pytest.fixture(scope="module")
def hf_auto():
    """Import the transformers auto classes once: the first import costs a few seconds, each build far less."""
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoConfig, AutoModelForCausalLM


@pytest.mark.parametrize("path", CATALOG_FILES, ids=[p.stem for p in CATALOG_FILES])
def test_catalog_entry_builds_with_published_param_count(path: Path, hf_auto):
    AutoConfig, AutoModelForCausalLM = hf_auto
    config, meta = _load(path)
    model_type = config.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    assert type(model).__name__ in config["architectures"], (
        f"{path.name}: built {type(model).__name__}, config names {config['architectures']}"
    )
    # parameters() yields a tied embedding/lm_head weight once, matching the published counts.
    count = sum(p.numel() for p in model.parameters())
    assert count == meta["params"], (
        f"{path.name}: built {count:,} parameters, `_peftbench.params` says {meta['params']:,} "
        f"(difference {count - meta['params']:+,})"
    )
