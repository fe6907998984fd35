"""PiSSA (Meng et al. 2024) via peft: LoRA whose A and B start from the principal singular vectors of each wrapped
weight, and whose frozen base keeps the residual, so training starts on the most important directions. The same
parameters and memory as LoRA; the base weights change at initialisation (merging restores the full weight)."""

from __future__ import annotations

from . import register
from .lora import Lora, lora_config


@register
class Pissa(Lora):
    name = "pissa"
    summary = "PiSSA: LoRA initialised from the weights' principal singular vectors"
    advice = None
    test_settings = ({"ranks": [8]},)

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        # A meta-device model (exact parameter counts) has no values to decompose; counts do not depend on init.
        init = True if ctx.device.type == "meta" else "pissa_niter_4"  # fast randomised SVD, 4 iterations
        return get_peft_model(model, lora_config(settings, ctx, init_lora_weights=init))
