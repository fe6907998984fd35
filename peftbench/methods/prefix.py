"""Prefix tuning (Li & Liang 2021) via peft: trained key/value prefixes in every attention layer."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from . import register
from .base import Method, MethodSettings, Traits


class PrefixSettings(MethodSettings):
    num_virtual_tokens: PositiveInt = Field(20, description="prefix length per layer")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP (prefix_projection)")


@register
class Prefix(Method):
    name = "prefix"
    summary = "prefix tuning: trained key/value prefix in every layer"
    traits = Traits(mergeable=False, quantized_base=False, extra_positions="+num_virtual_tokens KV positions per layer")
    Settings = PrefixSettings
    default_learning_rate = 1e-2

    def prepare(self, model, settings, ctx):
        from peft import PrefixTuningConfig, get_peft_model

        config = PrefixTuningConfig(
            task_type=ctx.peft_task_type,
            num_virtual_tokens=settings.num_virtual_tokens,
            prefix_projection=settings.projection,
        )
        return get_peft_model(model, config)
