"""IA3 (Liu et al. 2022) via peft: learned rescaling vectors on keys, values and the feed-forward activations."""

from __future__ import annotations

from pydantic import Field

from . import register
from .base import Method, MethodSettings, Traits


class IA3Settings(MethodSettings):
    target_modules: list[str] | None = Field(None, description="default: peft's per-architecture default")
    feedforward_modules: list[str] | None = Field(None, description="subset of target_modules scaled at the input")


@register
class IA3(Method):
    name = "ia3"
    summary = "IA3: learned scaling of keys, values and FFN activations"
    traits = Traits(mergeable=True, quantized_base=False)
    Settings = IA3Settings
    default_learning_rate = 1e-2

    def prepare(self, model, settings, ctx):
        from peft import IA3Config, get_peft_model

        config = IA3Config(
            task_type=ctx.peft_task_type,
            target_modules=settings.target_modules,
            feedforward_modules=settings.feedforward_modules,
        )
        return get_peft_model(model, config)
