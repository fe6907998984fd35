"""LayerNorm tuning (Zhao et al. 2023) via peft's LN-tuning: only the normalisation layers' scales (and biases) are
trained; the selective-training baseline for models without biases (BitFit has nothing to train on Llama)."""

from __future__ import annotations

from pydantic import Field

from ..arch import Footprint, Saved
from . import register
from .base import TARGETS_OPTION, Method, MethodSettings, Traits, classifier_copy


class LnTuningSettings(MethodSettings):
    target_modules: list[str] | None = Field(None, description="norm module names; default: peft's per-architecture")


# Norm modules per architecture: name -> (one per block?, parameters per module as a multiple of hidden size).
# The defaults are peft's TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING (peft 0.21); peft has none for
# bert, where every LayerNorm (embeddings and two per block) is the natural choice.
NORMS = {
    "llama": {"input_layernorm": (True, 1), "post_attention_layernorm": (True, 1), "norm": (False, 1)},
    "phi": {"input_layernorm": (True, 2), "final_layernorm": (False, 2)},
    "bert": {"LayerNorm": (True, 4)},  # two per block (weight + bias each); the embeddings' one is added below
    "qwen2": {"input_layernorm": (True, 1), "post_attention_layernorm": (True, 1), "norm": (False, 1)},
    "gemma2": {"input_layernorm": (True, 1), "post_attention_layernorm": (True, 1), "pre_feedforward_layernorm":
               (True, 1), "post_feedforward_layernorm": (True, 1), "norm": (False, 1)},
}
NORMS["mistral"] = NORMS["gemma"] = NORMS["llama"]
DEFAULTS = {"qwen2": ["post_attention_layernorm"], "bert": ["LayerNorm"]}


def default_targets(model_type: str) -> list[str]:
    return DEFAULTS.get(model_type, list(NORMS[model_type]))


@register
class LnTuning(Method):
    name = "ln-tuning"
    summary = "LN tuning: train only the normalisation layers"
    traits = Traits(mergeable=True, quantized_base=False)
    family = "selective"
    peft_type = "LN_TUNING"
    options = TARGETS_OPTION
    Settings = LnTuningSettings
    default_learning_rate = 1e-2

    def footprint(self, arch, settings):
        """peft trains a copy of each targeted norm (so the total grows by the same count). Saved per token per
        trained norm: its normalised input, which the scale's gradient needs."""
        from ..errors import PeftbenchError
        table = NORMS[arch.model_type]
        targets = settings.target_modules or default_targets(arch.model_type)
        unknown = [t for t in targets if t not in table]
        if unknown:
            raise PeftbenchError(f"ln-tuning: no memory model for norm modules {unknown} of {arch.model_type}")
        params, saved = 0, []
        for t in targets:
            per_block, per_h = table[t]
            params += per_h * arch.hidden * (arch.layers if per_block else 1)
            if per_block:
                saved += [Saved(arch.hidden, "act")] * (2 if arch.model_type == "bert" else 1)
        if arch.model_type == "bert" and "LayerNorm" in targets:
            params += 2 * arch.hidden  # the embeddings' LayerNorm
        head = classifier_copy(arch)
        return Footprint(trainable=params + head, added=params + head, saved=tuple(saved),
                         largest_trainable=max(2 * arch.hidden, head))

    def prepare(self, model, settings, ctx):
        from peft import LNTuningConfig, get_peft_model

        targets = settings.target_modules or DEFAULTS.get(model.config.model_type)
        return get_peft_model(model, LNTuningConfig(task_type=ctx.peft_task_type, target_modules=targets))
