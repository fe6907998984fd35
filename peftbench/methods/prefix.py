"""Prefix tuning (Li & Liang 2021) via peft: trained key/value prefixes in every attention layer."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from ..arch import Footprint
from . import register
from .base import VIRTUAL_TOKENS_OPTION, Advice, Method, MethodSettings, Traits, classifier_copy


class PrefixSettings(MethodSettings):
    num_virtual_tokens: PositiveInt = Field(20, description="prefix length per layer")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP (prefix_projection)")


@register
class Prefix(Method):
    name = "prefix"
    summary = "prefix tuning: trained key/value prefix in every layer"
    # peft raises "PREFIX_TUNING does not work with gradient checkpointing" (its prefix is passed as a KV cache)
    traits = Traits(mergeable=False, quantized_base=False, extra_positions="+num_virtual_tokens KV positions per layer",
                    gradient_checkpointing=False)
    family = "soft-prompt"
    peft_type = "PREFIX_TUNING"
    options = VIRTUAL_TOKENS_OPTION
    Settings = PrefixSettings
    test_settings = ({"num_virtual_tokens": 30}, {"num_virtual_tokens": 10, "projection": True})
    default_learning_rate = 1e-2
    advice = Advice(
        prior=-1.5,
        why="trains a key/value prefix per layer: far behind LoRA and full fine-tuning on generation (PEFT "
            "MetaMathQA: 0.15 vs 0.48-0.53), and every sequence carries the prefix at inference",
        learning_rate=1e-2,
        candidates=({"num_virtual_tokens": 20},),
    )

    def footprint(self, arch, settings):
        """A key and a value vector (KV width, so GQA-aware as in peft) per virtual token per block; with
        `projection`, an embedding of n x width feeding a two-layer MLP (width -> width -> 2 x blocks x width)."""
        n, width, out = settings.num_virtual_tokens, arch.kv_dim, 2 * arch.layers * arch.kv_dim
        params = n * width + width * width + width + width * out + out if settings.projection else n * out
        head = classifier_copy(arch)
        return Footprint(trainable=params + head, added=params + head, kv_prefix=n,
                         largest_trainable=max(params if not settings.projection else width * out, head))

    def prepare(self, model, settings, ctx):
        from peft import PrefixTuningConfig, get_peft_model

        from .. import compat
        from ..errors import PeftbenchError

        config = PrefixTuningConfig(
            task_type=ctx.peft_task_type,
            num_virtual_tokens=settings.num_virtual_tokens,
            prefix_projection=settings.projection,
        )
        model = get_peft_model(model, config)
        if ctx.task.generates:
            compat.prompt_learning_generation(model)
        if ctx.task.head != "classifier":
            return model
        # peft passes the prefix to the classifier itself if its forward takes a KV cache, else to its backbone
        backbone = model.base_model.get_submodule(model.transformer_backbone_name)
        if compat.takes_kv_cache(model.base_model.forward) != "past_key_values":
            compat.accept_kv_prefix(backbone)
            if compat.takes_kv_cache(backbone.forward) is None:
                raise PeftbenchError(f"prefix tuning needs attention that takes a KV cache; "
                                     f"{type(backbone).__name__}.forward takes none")
        return model
