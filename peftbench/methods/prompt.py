"""Prompt tuning (Lester et al. 2021) via peft: trained soft-prompt embeddings prepended to the input."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from ..arch import Footprint
from . import register
from .base import VIRTUAL_TOKENS_OPTION, Advice, Method, MethodSettings, Traits, classifier_copy


class PromptSettings(MethodSettings):
    num_virtual_tokens: PositiveInt = Field(20, description="soft-prompt length")
    init: Literal["random", "text"] = Field("random", description="random init, or from the embeddings of init_text")
    init_text: str | None = Field(None, description="text whose token embeddings initialise the prompt (init: text)")

    @model_validator(mode="after")
    def _text_needs_text(self):
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text")
        return self


@register
class Prompt(Method):
    name = "prompt"
    summary = "prompt tuning: trained soft prompt prepended to the input"
    traits = Traits(mergeable=False, quantized_base=False, extra_positions="+num_virtual_tokens input positions")
    family = "soft-prompt"
    peft_type = "PROMPT_TUNING"
    options = VIRTUAL_TOKENS_OPTION
    Settings = PromptSettings
    test_settings = ({"num_virtual_tokens": 20},)
    default_learning_rate = 3e-2
    advice = Advice(
        prior=-1.5,
        why="trains only a soft prompt: competitive at ~10B parameters and beyond (Lester et al. 2021), far behind "
            "below that (PEFT MetaMathQA, 3B: 0.25 vs 0.48-0.53; peftbench smoke suite)",
        learning_rate=3e-2,
        candidates=({"num_virtual_tokens": 20},),
    )

    def footprint(self, arch, settings):
        """n x hidden trained embeddings; every sequence (activations and logits) grows by n positions."""
        params, head = settings.num_virtual_tokens * arch.hidden, classifier_copy(arch)
        return Footprint(trainable=params + head, added=params + head, extra_positions=settings.num_virtual_tokens,
                         largest_trainable=max(params, head))

    def counting_settings(self, settings):
        return settings.model_copy(update={"init": "random", "init_text": None})  # counts do not depend on init

    def prepare(self, model, settings, ctx):
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

        kwargs = {}
        if settings.init == "text":
            kwargs = dict(
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=settings.init_text,
                tokenizer_name_or_path=ctx.tokenizer_path,
            )
        from .. import compat

        config = PromptTuningConfig(
            task_type=ctx.peft_task_type, num_virtual_tokens=settings.num_virtual_tokens, **kwargs
        )
        model = get_peft_model(model, config)
        if ctx.task.generates:
            compat.prompt_learning_generation(model)
        return model
