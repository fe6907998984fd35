"""rsLoRA (Kalajdzievski 2023) via peft: LoRA scaled by alpha/sqrt(r) instead of alpha/r, so higher ranks keep
learning; the same parameters and memory as LoRA."""

from __future__ import annotations

from . import register
from .lora import Lora, lora_config


@register
class RsLora(Lora):
    name = "rslora"
    summary = "rsLoRA: LoRA with rank-stabilised scaling alpha/sqrt(r)"
    advice = None
    test_settings = ({"ranks": [16], "target_modules": "all-linear"},)

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(settings, ctx, use_rslora=True))
