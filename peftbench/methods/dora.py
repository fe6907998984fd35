"""DoRA (Liu et al. 2024) via peft: LoRA on the direction of each wrapped weight plus a learned magnitude per
output feature (`use_dora=True`). Mergeable; slower and heavier than LoRA in training because every wrapped layer
recomputes its full weight's column norms at every step."""

from __future__ import annotations

from ..arch import Saved
from . import register
from .lora import Lora, lora_config, lora_footprint


@register
class Dora(Lora):
    name = "dora"
    summary = "DoRA: LoRA plus a learned magnitude per output (weight-decomposed)"
    advice = None
    test_settings = ({"ranks": [8]}, {"ranks": [4], "target_modules": "all-linear", "dropout": 0.0})

    def footprint(self, arch, settings):
        """LoRA's, plus one magnitude vector (d_out) per wrapped linear. Saved per wrapped block linear, besides
        LoRA's: the LoRA branch output (fp32) and the base output that the magnitude scales (recomputed in fp32
        from the dropped-out input when dropout is on, else the layer's own output); with dropout, F.linear also
        keeps the fp32 copy of the frozen weight it computed with (16-bit bases). Transient: the identity matrix
        and the full-size weight, LoRA product and sum peft builds for the norms (peft tuners/lora/dora.py)."""
        from dataclasses import replace

        fp = lora_footprint(arch, settings)
        wrapped = arch.targets(settings.target_modules, arch.lora_defaults)
        magnitude = sum(m.d_out * (arch.layers if arch.in_block(m) else 1) for m in wrapped)
        block = [m for m in wrapped if arch.in_block(m)]
        dropout = bool(settings.dropout)
        saved = [Saved(m.d_out, "fp32") for m in block] + [Saved(m.d_out, "fp32" if dropout else "act") for m in block]
        return replace(
            fp, trainable=fp.trainable + magnitude, added=fp.added + magnitude, saved=fp.saved + tuple(saved),
            weight_copies=sum(m.d_in * m.d_out for m in block) if dropout else 0,
            transient_fp32=max((m.d_in * m.d_in + 4 * m.d_in * m.d_out for m in wrapped), default=0),
            largest_trainable=max(fp.largest_trainable, max((m.d_out for m in wrapped), default=0)))

    def prepare(self, model, settings, ctx):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(settings, ctx, use_dora=True))
