"""Each method's analytic parameter count (its `footprint`, used by the memory model) against peft itself: the
architecture built on the meta device, the real peft config applied, peft's counter read (peftbench/exact.py)."""

from __future__ import annotations

import pytest

from peftbench import catalog
from peftbench.arch import IA3_DEFAULTS, LORA_DEFAULTS, arch_from_config

torch = pytest.importorskip("torch")

from peftbench.exact import arch_counts, exact_counts  # noqa: E402

# Every registered method, with default and non-default settings (targets by name, all-linear, projections).
SETTINGS = [
    {"method": "full"},
    {"method": "lora", "ranks": [8]},
    {"method": "lora", "ranks": [16], "target_modules": "all-linear"},
    {"method": "lora", "ranks": [4], "target_modules": ["q_proj", "o_proj", "down_proj"]},
    {"method": "qlora", "ranks": [16], "target_modules": "all-linear"},
    {"method": "prefix", "num_virtual_tokens": 30},
    {"method": "prefix", "num_virtual_tokens": 10, "projection": True},
    {"method": "prompt", "num_virtual_tokens": 20},
    {"method": "ia3"},
]
# The LoRA variants and the selective baseline, on a few architectures (one of each family).
MORE = [
    {"method": "dora", "ranks": [8]},
    {"method": "dora", "ranks": [4], "target_modules": "all-linear", "dropout": 0.0},
    {"method": "rslora", "ranks": [16], "target_modules": "all-linear"},
    {"method": "pissa", "ranks": [8]},
    {"method": "olora", "ranks": [8]},
    {"method": "lora8bit", "ranks": [8], "target_modules": "all-linear"},
    {"method": "ln-tuning"},
]
PHI_NAMES = {"o_proj": "dense", "down_proj": "fc2"}  # phi's names for the same projections


def _for(model: str, settings: dict) -> dict:
    if model.startswith("phi") and isinstance(settings.get("target_modules"), list):
        return {**settings, "target_modules": [PHI_NAMES.get(t, t) for t in settings["target_modules"]]}
    return settings


@pytest.mark.parametrize("model", catalog.names())
def test_analytic_counts_equal_peft_on_the_meta_device(model):
    cfg = catalog.resolve(model).config
    arch = arch_from_config(cfg)
    wrong = []
    for s in (_for(model, s) for s in SETTINGS):
        exact = exact_counts(cfg, "causal_lm", s["method"], s)
        if arch_counts(arch, s["method"], s) != exact:
            wrong.append((s, arch_counts(arch, s["method"], s), exact))
    assert not wrong, wrong


@pytest.mark.parametrize("model", ["llama-3.2-1b", "qwen2.5-0.5b", "phi-1.5", "gemma-2-2b", "mistral-7b"])
def test_variants_count_the_same_as_peft(model):
    cfg = catalog.resolve(model).config
    arch = arch_from_config(cfg)
    wrong = [(s, arch_counts(arch, s["method"], s), exact_counts(cfg, "causal_lm", s["method"], s)) for s in MORE]
    assert not [w for w in wrong if w[1] != w[2]], wrong


def test_llama_2_7b_lora_r8_qv_is_the_published_count():
    cfg = catalog.resolve("llama-2-7b").config
    assert exact_counts(cfg, "causal_lm", "lora", {"method": "lora", "ranks": [8]}) == (4_194_304, 6_742_609_920)


@pytest.mark.parametrize(("model", "labels"), [("builtin:minilm", 2), ("llama-3.2-1b", 3), ("qwen2.5-0.5b", 2)])
def test_classification_heads_count_the_same(model, labels):
    cfg = catalog.resolve(model).config
    arch = arch_from_config(cfg, "classification", labels)
    for s in SETTINGS + MORE:
        if isinstance(s.get("target_modules"), list) and model == "builtin:minilm":
            continue  # BERT names its projections query/key/value
        assert arch_counts(arch, s["method"], s) == exact_counts(cfg, "classification", s["method"], s, labels), s


def test_builtin_tiny_llama_counts():
    cfg = catalog.resolve("builtin:tiny-llama", {"hidden_size": 32, "intermediate_size": 64}).config
    arch = arch_from_config(cfg)
    for s in SETTINGS + MORE:
        assert arch_counts(arch, s["method"], s) == exact_counts(cfg, "causal_lm", s["method"], s), s


def test_default_targets_are_peft_s():
    """estimate.py copies peft's per-architecture default targets (it must not import peft); they must agree."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGETS,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA_TARGETS,
    )

    for model_type, targets in LORA_DEFAULTS.items():
        assert set(targets) == set(LORA_TARGETS[model_type]), model_type
    for model_type, (targets, ff) in IA3_DEFAULTS.items():
        assert set(targets) == set(IA3_TARGETS[model_type]), model_type
        assert set(ff) == set(IA3_FF[model_type]), model_type
