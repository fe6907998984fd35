"""LoRA (Hu et al. 2021) via peft; one suite entry with several ranks expands into runs lora-r4, lora-r8, ..."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from . import register
from .base import Method, MethodSettings, RunPlan, Traits


class LoraSettings(MethodSettings):
    ranks: list[PositiveInt] = Field([8], min_length=1, description="one run per rank")
    alpha: PositiveFloat | None = Field(None, description="lora_alpha; default 2 x rank")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names or 'all-linear'; default: peft's per-architecture default (e.g. q,v)"
    )
    dropout: NonNegativeFloat = Field(0.05, le=1.0, description="lora_dropout")


def lora_config(settings: LoraSettings, ctx):
    """The peft LoraConfig for one resolved run (settings.ranks holds exactly one rank after expand)."""
    from peft import LoraConfig

    rank = settings.ranks[0]
    return LoraConfig(
        task_type=ctx.peft_task_type,
        r=rank,
        lora_alpha=settings.alpha if settings.alpha is not None else 2 * rank,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
    )


def expand_ranks(method: Method, settings: LoraSettings) -> list[RunPlan]:
    """A run per rank, named '<method>-r<rank>'."""
    plans = []
    for rank in dict.fromkeys(settings.ranks):  # keep order, drop repeats
        resolved = settings.model_copy(update={"ranks": [rank]}).model_dump()
        plans.append(RunPlan(f"{method.name}-r{rank}", method.name, resolved))
    return plans


@register
class Lora(Method):
    name = "lora"
    summary = "LoRA: low-rank update on frozen weights"
    traits = Traits(mergeable=True, quantized_base=False)
    Settings = LoraSettings
    default_learning_rate = 5e-4

    def expand(self, settings):
        return expand_ranks(self, settings)

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(settings, ctx))
