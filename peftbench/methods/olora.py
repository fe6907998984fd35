"""OLoRA (Büyükakyüz 2024) via peft: LoRA whose A and B start from a QR decomposition of each wrapped weight (an
orthonormal basis), the base keeping the residual. The same parameters and memory as LoRA."""

from __future__ import annotations

from . import register
from .lora import Lora, lora_config


@register
class Olora(Lora):
    name = "olora"
    summary = "OLoRA: LoRA initialised from an orthonormal (QR) basis of the weights"
    advice = None
    test_settings = ({"ranks": [8]},)

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        init = True if ctx.device.type == "meta" else "olora"  # nothing to decompose on the meta device
        return get_peft_model(model, lora_config(settings, ctx, init_lora_weights=init))
