"""Workarounds for known incompatibilities between the libraries peftbench runs on, each in one place.

Worker side only: called on a loaded model, they import torch, transformers, peft or bitsandbytes lazily. Every
workaround says which versions need it, why, and what proves it; each one checks for the condition it repairs
and does nothing where that condition is absent, so it is harmless on the versions that do not need it.

- `keep_4bit_weights_trainable`: bitsandbytes >= 0.49 repacks a 4-bit weight for a CPU inference kernel on the
  first eval-mode forward on CPUs with AVX512-BF16; training afterwards breaks, and that kernel computes in
  bf16 whatever the run's compute dtype. Off, so every CPU trains and measures QLoRA the same way.
- `accept_kv_prefix`: transformers 5.24 renamed the KV-cache argument of every model's forward from
  `past_key_values` to `cache`; peft 0.21 looks for `past_key_values` in a classification backbone's signature
  before it passes the prefix of prefix tuning.
- `prompt_learning_generation`: the same rename, in generation: peft 0.21 looks for the cache under
  `past_key_values` in the inputs transformers prepares for each step, so under 5.24 it drops the prefix of
  prefix tuning and re-inserts the soft prompt of prompt tuning at every step. Silently: generation runs, with
  wrong tokens.

Tests: tests/test_compat.py (each workaround, and each failure it repairs reproduced without it).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

# ---- bitsandbytes: one 4-bit path on every CPU --------------------------------------------------------------


def keep_4bit_weights_trainable(model: Any) -> int:
    """Turn off bitsandbytes' CPU weight repacking on every `Linear4bit` of `model`; returns how many it touched.

    bitsandbytes (0.49 to at least 0.50.2) repacks a `Linear4bit` weight into a layout for its AVX512-BF16 CPU
    kernel on the first forward that is in eval mode, with an input that needs no gradient, on a CPU where
    `bitsandbytes.functional.has_avx512bf16()` is true (`Linear4bit.forward`, `support_avx512bf16_for_cpu`). The
    harness evaluates the model before training, which is exactly such a forward; afterwards the packed weight
    goes through an inference-only kernel with no backward ("a view of a leaf Variable that requires grad is
    being used in an in-place operation"), packing fails outright for layers narrower than a 4-bit block
    ("shape '[32, 0]' is invalid"), and the packed kernel casts activations to bf16 whatever the compute dtype.
    Unpacking again (`_convert_weight_packed_for_cpu_inverse`) re-quantizes the double-quantized scales, so it
    would change the weights. Must run before the first forward. Other devices never repack; nothing changes.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes: no 4-bit layers to repair
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def packed_4bit_layers(model: Any) -> int:
    """How many 4-bit weights of `model` are in bitsandbytes' CPU-packed layout (0 after the workaround above)."""
    states = (getattr(p, "quant_state", None) for p in model.parameters())
    return sum(1 for state in states if getattr(state, "packing_format_for_cpu", False))


# ---- transformers 5.24: past_key_values renamed to cache ---------------------------------------------------


def takes_kv_cache(forward: Any) -> str | None:
    """The name under which `forward` takes a KV cache ('past_key_values' or 'cache'), or None."""
    params = inspect.signature(forward).parameters
    for name in ("past_key_values", "cache"):
        if name in params:
            return name
    return None


def accept_kv_prefix(module: Any) -> bool:
    """Let `module.forward` take a KV cache as `past_key_values` when it names it `cache` (transformers >= 5.24).

    peft 0.21.2's prefix tuning for sequence classification reads the backbone's forward signature and raises
    "Model does not support past key values which are required for prefix tuning." unless `past_key_values` is
    in it; transformers 5.24 renamed that argument to `cache` (the old name is still accepted, deprecated until
    5.40). The wrapper advertises both names and passes the prefix on as `cache`, so it keeps working once the
    deprecated name is gone. Returns whether a wrapper was installed.
    """
    forward = module.forward
    if takes_kv_cache(forward) != "cache":
        return False
    signature = inspect.signature(forward)

    @functools.wraps(forward)
    def forward_with_prefix(*args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        if past_key_values is not None:
            if kwargs.get("cache") is not None:
                raise ValueError("both past_key_values and cache were given")
            kwargs["cache"] = past_key_values
        return forward(*args, **kwargs)

    params = list(signature.parameters.values())
    extra = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(params) if p.kind == inspect.Parameter.VAR_KEYWORD), len(params))
    forward_with_prefix.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])
    module.forward = forward_with_prefix  # an instance attribute: nn.Module.__call__ finds it first
    return True


def prompt_learning_generation(peft_model: Any) -> bool:
    """Make peft's generation for prompt-learning methods see the cache transformers >= 5.24 calls `cache`.

    peft 0.21.2's `PeftModelForCausalLM.prepare_inputs_for_generation` takes the base model's prepared inputs
    and looks for the KV cache under `past_key_values`: it injects the prefix (prefix tuning) or the soft prompt
    (prompt tuning) when that cache is missing or empty, and keeps only the newest token once it is filled. Under
    transformers 5.24 the prepared inputs carry it as `cache`, so peft injects at every step, and the model,
    given both names, uses `cache` and ignores the prefix (measured: prefix-tuned generation equals the base
    model's). This wraps peft's method for this model only: the base model's inputs are handed to peft with the
    cache under its old name, and peft's result goes back to the model under the new one. Returns whether the
    wrapper was installed (only where the base model's forward takes `cache`).
    """
    base = peft_model.get_base_model()
    if takes_kv_cache(base.forward) != "cache" or not hasattr(peft_model, "base_model_prepare_inputs_for_generation"):
        return False
    peft_prepare = type(peft_model).prepare_inputs_for_generation

    def prepare_inputs_for_generation(*args: Any, **kwargs: Any) -> dict[str, Any]:
        base_prepare = peft_model.base_model_prepare_inputs_for_generation

        def base_prepare_old_name(*a: Any, **k: Any) -> dict[str, Any]:
            inputs = base_prepare(*a, **k)
            if "cache" in inputs and "past_key_values" not in inputs:
                inputs["past_key_values"] = inputs.pop("cache")
            return inputs

        peft_model.base_model_prepare_inputs_for_generation = base_prepare_old_name
        try:
            inputs = peft_prepare(peft_model, *args, **kwargs)
        finally:
            peft_model.base_model_prepare_inputs_for_generation = base_prepare
        if "past_key_values" in inputs:
            inputs["cache"] = inputs.pop("past_key_values")
        return inputs

    peft_model.prepare_inputs_for_generation = prepare_inputs_for_generation
    return True
