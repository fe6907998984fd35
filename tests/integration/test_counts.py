"""Every method's analytic parameter count (its `footprint`, which the memory model uses) against peft itself: the
architecture built on the meta device, the real peft config applied, peft's counter read (peftbench/exact.py).

The methods and their settings come from the registry (each method's `test_settings`), so a new method file is
checked here without editing this one.
"""

from __future__ import annotations

import pytest

from peftbench import catalog, methods
from peftbench.arch import IA3_DEFAULTS, LORA_DEFAULTS, NotApplicable, arch_from_config

from ..conftest import TINY_CAUSAL

torch = pytest.importorskip("torch")

from peftbench.exact import arch_counts, exact_counts  # noqa: E402

METHODS = sorted(methods.load_all())
TINY = (TINY_CAUSAL["model"]["name"], TINY_CAUSAL["model"]["config_overrides"])
# One architecture of each family and shape that changes a count: grouped-query heads (llama-3.2-1b, mistral),
# biases (qwen2), phi's own module names, gemma-2's four norms per block, a tied tiny Llama whose v_proj is half
# as wide as q_proj; BERT and two decoders with a classification head (a copy of it is trained, and 3 labels).
ARCHS = [
    ("llama-2-7b", "causal_lm", 2), ("llama-3.2-1b", "causal_lm", 2), ("qwen2.5-0.5b", "causal_lm", 2),
    ("phi-2", "causal_lm", 2), ("mistral-7b", "causal_lm", 2), ("gemma-2-2b", "causal_lm", 2),
    (TINY, "causal_lm", 2),
    ("builtin:minilm", "classification", 2), ("llama-3.2-1b", "classification", 3),
    ("qwen2.5-0.5b", "classification", 2),
]
RENAME = {  # the same projections under phi's and BERT's module names
    "phi": {"o_proj": "dense", "down_proj": "fc2"},
    "bert": {"q_proj": "query", "o_proj": "attention.output.dense", "down_proj": "intermediate.dense"},
}


def config_of(model) -> dict:
    name, overrides = model if isinstance(model, tuple) else (model, None)
    return catalog.resolve(name, overrides).config


def for_arch(model_type: str, settings: dict) -> dict:
    names = RENAME.get(model_type)
    if names and isinstance(settings.get("target_modules"), list):
        return {**settings, "target_modules": [names.get(t, t) for t in settings["target_modules"]]}
    return settings


def mismatches(cfg: dict, task: str, labels: int, settings_list) -> list:
    arch = arch_from_config(cfg, task, labels)
    wrong = []
    for method, settings in settings_list:
        s = for_arch(cfg["model_type"], {"method": method, **settings})
        try:
            analytic = arch_counts(arch, method, s)
        except NotApplicable:  # nothing to train on this architecture (BitFit without biases): so says the model
            with pytest.raises(NotApplicable):
                exact_counts(cfg, task, method, s, labels)
            continue
        exact = exact_counts(cfg, task, method, s, labels)
        if analytic != exact:
            wrong.append((s, analytic, exact))
    return wrong


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("model", "task", "labels"), ARCHS,
                         ids=[f"{m[0] if isinstance(m, tuple) else m}-{t}-{n}" for m, t, n in ARCHS])
def test_analytic_counts_equal_peft_on_the_meta_device(method, model, task, labels):
    cases = [(method, s) for s in methods.get(method).test_settings]
    assert not mismatches(config_of(model), task, labels, cases)


@pytest.mark.parametrize("model", catalog.names())
def test_every_catalog_model_counts_as_peft_does(model):
    """Every catalog architecture with every method's first test settings."""
    cases = [(m, methods.get(m).test_settings[0]) for m in METHODS]
    assert not mismatches(config_of(model), "causal_lm", 2, cases)


def test_every_method_has_test_settings_that_validate():
    for name in METHODS:
        m = methods.get(name)
        assert m.test_settings, name
        for s in m.test_settings:
            m.Settings.model_validate({"method": name, **s})


def test_llama_2_7b_lora_r8_qv_is_the_published_count():
    cfg = catalog.resolve("llama-2-7b").config
    assert exact_counts(cfg, "causal_lm", "lora", {"method": "lora", "ranks": [8]}) == (4_194_304, 6_742_609_920)


def test_default_targets_are_peft_s():
    """arch.py copies peft's per-architecture default targets (it must not import peft); they must agree."""
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
